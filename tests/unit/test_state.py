"""state: the optional state file survives restarts, and a bad one is never trusted."""
import asyncio
import json
import logging
import pathlib
from typing import Any

import pytest

from deploywatch import state
from deploywatch.tracker import Tracker, encode

OBJECTS: dict[str, dict[str, Any]] = {
    'u-1': {'metadata': {'name': 'web', 'namespace': 'default', 'uid': 'u-1', 'resourceVersion': '7',
                         'labels': {'emoji': '🚀', 'accent': 'café'}}},
    'u-2': {'metadata': {'name': 'api', 'namespace': 'prod', 'uid': 'u-2', 'resourceVersion': '9'}},
}
PRINTED = {uid: encode(obj) for uid, obj in OBJECTS.items()}


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


def test_keep_saved_saves_changes_and_once_more_when_stopped(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, 'SAVE_INTERVAL', 0.01)
    path = tmp_path / 'state.json'
    tracker = Tracker(redact=True)

    async def scenario() -> list[set[str]]:
        seen: list[set[str]] = []
        task = asyncio.create_task(state.keep_saved(tracker, path))
        tracker.observe(None, OBJECTS['u-1'])
        while not path.exists():
            await asyncio.sleep(0.01)
        seen.append(set(state.load(path) or {}))
        tracker.observe(None, OBJECTS['u-2'])
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        seen.append(set(state.load(path) or {}))
        return seen

    assert asyncio.run(scenario()) == [{'u-1'}, {'u-1', 'u-2'}]
