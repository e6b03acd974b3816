"""encoding: the JSON bytes the tracker keeps, right-sized and read back exactly."""
import threading
import time
import tracemalloc
from typing import Any

import orjson
import pytest

from deploywatch.base.encoding import (
    PACKED,
    SPLICE,
    STDLIB,
    Kept,
    Packer,
    decode,
    encode,
    kept,
    plain,
    splice,
    tight,
)
from deploywatch.model import authorship
from deploywatch.model.tracker import Tracker

OBJ: dict[str, Any] = {'metadata': {'name': 'web', 'labels': {f'l{i}': 'x' * 20 for i in range(100)}}}


def held(make: Any, count: int = 200) -> float:
    """Bytes allocated per kept result of ``make()``, as tracemalloc sees them."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [make() for _ in range(count)]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept
    return (after - before) / count


def test_orjson_over_allocates_what_it_returns() -> None:
    # The reason for tight(): if orjson ever stops doing this, tight() is merely a cheap copy.
    assert held(lambda: orjson.dumps(OBJ)) > 1.5 * len(orjson.dumps(OBJ))


def test_kept_encodings_are_right_sized() -> None:
    size = len(encode(OBJ))
    assert held(lambda: encode(OBJ)) < size + 64
    entries = [{'manager': 'kubectl', 'operation': 'Update', 'time': '2024-05-01T09:00:00Z'}]
    stamps = authorship.stamps(entries)
    assert held(lambda: authorship.stamps(entries)) < len(stamps) + 64
    assert orjson.loads(stamps) == [['kubectl', 'Update', None, '2024-05-01T09:00:00Z']]


def test_tight_is_the_same_bytes() -> None:
    data = orjson.dumps(OBJ)
    assert tight(data) == data


def test_what_orjson_refuses_round_trips_through_the_standard_library() -> None:
    for hostile in ({'n': 2**70}, {'s': '\ud800'}):
        data = encode(hostile)
        assert data.startswith(STDLIB)
        assert decode(data) == hostile
    assert decode(encode(OBJ)) == OBJ


def deployments(count: int) -> list[bytes]:
    container = {'name': 'app', 'ports': [{'containerPort': 80}]}
    condition = {'type': 'Available', 'message': 'Deployment has minimum availability.'}
    return [encode({'metadata': {'name': f'app-{i}', 'namespace': 'team', 'uid': f'u-{i}'},
                    'spec': {'replicas': i % 4, 'template': {'spec': {'containers': [
                        {**container, 'image': f'registry.example/app:{i}'}]}}},
                    'status': {'conditions': [condition]}})
            for i in range(count)]


def test_a_packer_keeps_plain_bytes_until_it_is_trained() -> None:
    packer = Packer(train_after=3)
    data = deployments(1)[0]
    assert not packer.wants(2) and packer.wants(3)
    assert packer.pack(data) is data


@pytest.mark.parametrize('count', [2, 300])  # 2: too few for zstd's trainer, the raw-content fallback
def test_packed_bytes_are_smaller_and_read_back_exactly(count: int) -> None:
    samples = deployments(count)
    packer = Packer(train_after=count)
    packer.train(samples)
    assert not packer.wants(count + 1)  # trained once
    for data in [*samples, deployments(count + 1)[-1], encode({'n': 2**70})]:
        packed = packer.pack(data)
        assert packed.startswith(PACKED)
        assert plain(packed) == data
        assert decode(packed) == decode(data)
    if count > 2:
        assert sum(map(len, map(packer.pack, samples))) < sum(map(len, samples)) / 3


def test_packed_bytes_are_read_back_in_any_thread() -> None:
    samples = deployments(50)
    packer = Packer(train_after=50)
    packer.train(samples)
    packed = [packer.pack(data) for data in samples]
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append([plain(p) for p in packed] == samples))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 4


class Record:
    def __init__(self, encoded: bytes) -> None:
        self.encoded = encoded


def test_a_background_packer_packs_records_in_place_on_its_thread() -> None:
    """What the tracker and the ledger share: each record given is packed in place, the same content,
    on the packing thread (what it packs at once and on the thread are the same bytes)."""
    samples = deployments(300)
    packer = Packer(train_after=300, background=True)
    packer.train(samples, now=True)
    packer.fresh()
    records = [Record(data) for data in samples]
    for record in records[:200]:
        packer.keep(record)
    assert packer.idle(timeout=30)
    for record in records[200:]:  # given after the thread went idle: it wakes up again
        packer.keep(record)
    assert packer.idle(timeout=30)
    assert [record.encoded for record in records] == [packer.pack(data) for data in samples]
    assert [plain(record.encoded) for record in records] == samples
    assert {thread.name for thread in threading.enumerate()} >= {'deploywatch packing'}


def test_a_changed_objects_new_state_rests_plain_and_only_its_last_state_is_packed() -> None:
    """keep(changed=key), the new state of an object held before, is read back without a
    decompression while the object keeps changing; a state replaced meanwhile is let go
    unpacked, the last one is packed once it has rested; first kept ones are packed at once."""
    samples = deployments(300)
    packer = Packer(train_after=300, background=True, rest=30.0)
    packer.train(samples, now=True)
    packer.fresh()
    prompt, resting = Record(samples[0]), Record(samples[1])
    packer.keep(resting, changed='u-1')
    packer.keep(prompt)
    deadline = time.monotonic() + 30  # a bound, not a pause: the thread packs in milliseconds
    while prompt.encoded == samples[0] and time.monotonic() < deadline:
        time.sleep(0.001)
    assert prompt.encoded == packer.pack(samples[0])
    assert resting.encoded == samples[1]  # packed given after it, it still rests (30 s)
    assert not packer.idle(timeout=0)

    rested = Packer(train_after=300, background=True, rest=0.05)
    rested.train(samples, now=True)
    rested.fresh()
    records = [Record(data) for data in samples[:60]]
    for index, record in enumerate(records):  # 20 objects, 3 states each
        rested.keep(record, changed=f'u-{index % 20}')
    assert rested.idle(timeout=30)
    for index, (record, data) in enumerate(zip(records, samples, strict=False)):
        replaced = index < 40 and record.encoded == data  # let go unpacked, or taken before it was
        assert replaced or record.encoded == rested.pack(data)
    assert [record.encoded for record in records[40:]] == [rested.pack(data) for data in samples[40:60]]


def test_two_packers_each_read_their_own() -> None:
    first, second = Packer(train_after=2), Packer(train_after=2)
    first.train(deployments(2))
    second.train([encode({'something': 'else entirely'}), encode({'and': ['more', 'of', 'it']})])
    data = deployments(3)[-1]
    assert plain(first.pack(data)) == plain(second.pack(data)) == data
    assert first.number != second.number


def spliced(event: Any) -> bytes:
    return orjson.dumps(event, option=SPLICE, default=splice)


def test_an_event_spliced_is_byte_for_byte_the_event_encoded() -> None:
    tracker = Tracker(redact=True, train_after=2)
    labels = {'emoji': '🚀', 'quote': '"\\</script>', 'control': '\x01\u2028'}
    containers = [{'name': 'app', 'env': [{'name': 'PASSWORD', 'value': 'secret'}]}]
    raws: list[dict[str, Any]] = [
        {'metadata': {'name': f'web-{i}', 'namespace': 'default', 'uid': f'u-{i}', 'resourceVersion': '1',
                      'labels': labels},
         'spec': {'replicas': 1.0 if i else 1, 'template': {'spec': {'containers': containers}}}}
        for i in range(3)]
    events = [tracker.observe(None, raw) for raw in raws]
    changed = {**raws[1], 'metadata': {**raws[1]['metadata'], 'resourceVersion': '2'},
               'status': {'replicas': 1}}
    events.append(tracker.observe('MODIFIED', changed))
    events.append(tracker.resync('u-2', slot=1))
    assert all(isinstance(event['object'], Kept) for event in events if event is not None)
    assert isinstance(events[3] and events[3]['old'], Kept)
    for event in events:
        assert event is not None
        assert spliced(event) == orjson.dumps(event)
        assert b'secret' not in spliced(event)


class Name(str):
    pass


def test_splice_writes_other_subclasses_as_orjson_does_and_refuses_the_same() -> None:
    value = {'name': Name('web'), 'kept': Kept({'a': 1}, b'{"a":1}'), 'list': [Name('x')]}
    assert spliced(value) == orjson.dumps({'name': 'web', 'kept': {'a': 1}, 'list': ['x']})
    with pytest.raises(TypeError):
        spliced({'set': {1}})


def test_what_orjson_did_not_write_is_not_spliced() -> None:
    hostile = {'n': 2**70}
    assert not isinstance(kept(hostile, encode(hostile)), Kept)
