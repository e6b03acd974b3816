"""encoding: the JSON bytes the tracker keeps, right-sized and read back exactly."""
import tracemalloc
from typing import Any

import orjson

from deploywatch import authorship
from deploywatch.encoding import STDLIB, decode, encode, tight

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
