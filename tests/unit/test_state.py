"""state: the optional state file survives restarts, and a bad one is never trusted."""
import asyncio
import hashlib
import json
import logging
import pathlib
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from deploywatch.base.encoding import Packer
from deploywatch.base.settings import Misconfigured
from deploywatch.model.tracker import encode
from deploywatch.runtime import state

OBJECTS: dict[str, dict[str, Any]] = {
    'u-1': {'metadata': {'name': 'web', 'namespace': 'default', 'uid': 'u-1', 'resourceVersion': '7',
                         'labels': {'emoji': '🚀', 'accent': 'café'}}},
    'u-2': {'metadata': {'name': 'api', 'namespace': 'prod', 'uid': 'u-2', 'resourceVersion': '9'}},
}
PRINTED = {uid: encode(obj) for uid, obj in OBJECTS.items()}
SHAPING = {'redact': True}


def test_saved_memory_loads_back_identical(tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'state.json'
    state.save(path, PRINTED)
    assert state.load(path) == PRINTED
    assert [p.name for p in tmp_path.iterdir()] == ['state.json']  # no temporary file left


def test_a_missing_file_is_a_first_start(tmp_path: pathlib.Path) -> None:
    assert state.load(tmp_path / 'absent.json') is None


@pytest.mark.parametrize('damage', ['torn', 'bit-flip', 'not-json', 'wrong-format', 'binary'])
def test_a_torn_or_corrupt_file_is_reported_and_ignored(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, damage: str) -> None:
    path = tmp_path / 'state.json'
    state.save(path, PRINTED)
    data = path.read_bytes()
    header, _, body = data.partition(b'\n')
    damaged = {
        'torn': data[: len(data) // 2],
        'bit-flip': data.replace(b'"7"', b'"8"'),
        'not-json': b'{"format": ',
        'wrong-format': json.dumps({**json.loads(header), 'format': 'other/9'}).encode() + b'\n' + body,
        'binary': b'\xff\xfe\x00garbage',
    }[damage]
    path.write_bytes(damaged)

    with caplog.at_level(logging.WARNING, logger='deploywatch'):
        assert state.load(path) is None
    assert 'state.json' in caplog.text


class Record:
    """A tracker's record (``encoding.Held``): its bytes packed in place after the line was committed."""

    def __init__(self, encoded: bytes) -> None:
        self.encoded = encoded


def test_a_ledger_holding_a_record_saves_it_packed_or_not_as_the_same_json(tmp_path: pathlib.Path) -> None:
    packer = Packer(train_after=2)
    packer.train(list(PRINTED.values()))
    record = Record(PRINTED['u-1'])
    ledger = state.Ledger()
    ledger.written('u-1', record)
    ledger.written('u-2', PRINTED['u-2'])
    assert ledger.snapshot().objects == PRINTED
    packer.keep(record)  # as the packing thread does, after the line was written
    packed = ledger.snapshot().objects
    assert packed['u-1'] == record.encoded != PRINTED['u-1']  # the ledger holds the packed bytes
    state.save(tmp_path / 'state.json', packed)
    assert state.load(tmp_path / 'state.json') == PRINTED  # the file holds plain JSON, whatever memory holds


def test_keep_saved_saves_changes_and_once_more_when_stopped(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, 'SAVE_INTERVAL', 0.01)
    path = tmp_path / 'state.json'
    ledger = state.Ledger()

    async def scenario() -> list[set[str]]:
        seen: list[set[str]] = []
        task = asyncio.create_task(state.keep_saved(state.Saver(path, ledger, shaping=SHAPING)))
        ledger.written('u-1', PRINTED['u-1'])
        while not path.exists():
            await asyncio.sleep(0.01)
        seen.append(set(state.load(path) or {}))
        ledger.written('u-2', PRINTED['u-2'])
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        seen.append(set(state.load(path) or {}))
        return seen

    assert asyncio.run(scenario()) == [{'u-1'}, {'u-1', 'u-2'}]


def test_the_final_save_lands_after_a_save_still_in_flight(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelled while a periodic save of an older memory is being written: the newest wins."""
    monkeypatch.setattr(state, 'SAVE_INTERVAL', 0.01)
    path = tmp_path / 'state.json'
    ledger = state.Ledger()
    ledger.written('u-1', PRINTED['u-1'])
    real_save = state.save
    in_flight = threading.Event()
    release = threading.Event()
    finished = threading.Event()  # the periodic save has written its (older) snapshot

    def slow_first_save(target: pathlib.Path, encoded: Mapping[str, bytes], **options: Any) -> None:
        if in_flight.is_set():
            real_save(target, encoded, **options)
            return
        in_flight.set()
        release.wait(5)  # the periodic save, stuck in its thread (a slow disk)
        real_save(target, encoded, **options)
        finished.set()

    monkeypatch.setattr(state, 'save', slow_first_save)

    class Saver(state.Saver):
        def save(self) -> bool:
            if in_flight.is_set():  # the final save: the stuck one is let go now, to finish during it
                release.set()
            return super().save()

    async def scenario() -> None:
        task = asyncio.create_task(state.keep_saved(Saver(path, ledger, shaping=SHAPING)))
        while not in_flight.is_set():
            await asyncio.sleep(0.01)
        ledger.written('u-2', PRINTED['u-2'])  # written after that snapshot was taken
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert finished.wait(5)  # the older save has landed too: whichever came last is on disk
    assert set(state.load(path) or {}) == {'u-1', 'u-2'}


def test_only_what_the_ledger_was_told_was_written_is_saved(tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'state.json'
    ledger = state.Ledger({'u-1': PRINTED['u-1']})
    saver = state.Saver(path, ledger, shaping=SHAPING)
    assert saver.save() is True
    assert saver.save() is False  # nothing changed
    ledger.written('u-2', PRINTED['u-2'])
    ledger.written('u-1', None)  # its DELETED was written
    assert saver.save() is True
    assert state.load(path) == {'u-2': PRINTED['u-2']}


def test_a_failed_save_names_the_file(tmp_path: pathlib.Path) -> None:
    saver = state.Saver(tmp_path / 'gone' / 'state.json', state.Ledger({'u-1': PRINTED['u-1']}),
                        shaping=SHAPING)
    with pytest.raises(state.SaveError, match=r'gone/state\.json'):
        saver.save()


@pytest.mark.parametrize('content', [b'a,b\n1,2\n', b'{"format": "other/1"}\n', b'\xff\x00'])
def test_load_usable_refuses_a_foreign_file_and_keeps_it(tmp_path: pathlib.Path, content: bytes) -> None:
    path = tmp_path / 'data'
    path.write_bytes(content)
    with pytest.raises(Misconfigured) as refused:
        state.load_usable(path)
    line = str(refused.value)
    assert '\n' not in line and 'DEPLOYWATCH_STATE_FILE' in line and 'not a deploywatch state file' in line
    assert path.read_bytes() == content


@pytest.mark.parametrize('where', ['directory', 'no-folder'])
def test_load_usable_refuses_a_path_no_save_could_write(tmp_path: pathlib.Path, where: str) -> None:
    path = tmp_path if where == 'directory' else tmp_path / 'missing' / 'state'
    with pytest.raises(Misconfigured, match='DEPLOYWATCH_STATE_FILE'):
        state.load_usable(path)


def test_load_usable_takes_its_own_files_and_empty_ones(tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'state'
    assert state.load_usable(path) is None  # not there yet
    path.write_bytes(b'')
    assert state.load_usable(path) is None
    state.save(path, PRINTED)
    assert state.load_usable(path) == state.Saved(PRINTED)
    path.write_bytes(path.read_bytes()[:40])  # torn, but ours: ignored with a warning, not refused
    assert state.load_usable(path) is None


def test_the_settings_that_shaped_the_objects_are_saved_and_a_mismatch_makes_them_unknown(
        tmp_path: pathlib.Path) -> None:
    """Issue 20, item 7: kept unredacted, restored redacted (or the other way): versions only."""
    path = tmp_path / 'state'
    state.save(path, PRINTED, shaping={'redact': False}, unknown={'u-2'})
    saved = state.load_usable(path)
    assert saved == state.Saved(PRINTED, {'redact': False}, frozenset({'u-2'}))
    assert saved.unknown_under({'redact': False}) == {'u-2'}  # still unknown from a run before
    assert saved.unknown_under({'redact': True}) == {'u-1', 'u-2'}


def test_a_file_that_records_no_settings_is_read_as_redacted(tmp_path: pathlib.Path) -> None:
    """Written before the settings were recorded: redacting again makes it exact, else unknown."""
    path = tmp_path / 'state'
    body = b''.join(key.encode() + b'\t' + data + b'\n' for key, data in PRINTED.items())
    header = {'format': 'deploywatch-state/2', 'checksum': hashlib.sha256(body).hexdigest()}
    path.write_bytes(json.dumps(header).encode() + b'\n' + body)
    saved = state.load_usable(path)
    assert saved is not None and saved.objects == PRINTED
    assert saved.unknown_under({'redact': True}) == set()
    assert saved.unknown_under({'redact': False}) == {'u-1', 'u-2'}


def test_the_ledger_knows_an_unknown_object_again_once_a_line_about_it_is_written(
        tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'state'
    ledger = state.Ledger()
    ledger.restore(PRINTED, unknown={'u-1', 'u-2'})
    saver = state.Saver(path, ledger, shaping=SHAPING)
    saver.save()
    assert json.loads(path.read_bytes().partition(b'\n')[0])['unknown'] == ['u-1', 'u-2']
    ledger.written('u-1', PRINTED['u-1'])
    ledger.written('u-2', None)
    saver.save()
    header = json.loads(path.read_bytes().partition(b'\n')[0])
    assert header['shaping'] == SHAPING and 'unknown' not in header
