"""encoding.loads (kube.listwatch decodes with it): orjson's speed, the standard library's answers."""
import json

import pytest

from deploywatch.base.encoding import loads

LINE = (b'{"type":"MODIFIED","object":{"metadata":{"name":"web",'
        b'"labels":{"team":"caf\xc3\xa9 \xf0\x9f\x9a\x80"}},"spec":{"replicas":3}}}')


def test_loads_decodes_a_watch_line_as_json_does() -> None:
    assert loads(LINE) == json.loads(LINE.decode('utf-8'))


@pytest.mark.parametrize('text', [
    '{"label":"\\ud800"}',  # a lone surrogate escape: JSON allows it, UTF-8 cannot hold it
    '{"n":123456789012345678901234567890}',  # beyond 64 bits: orjson would make it a float
    '{"n":18446744073709551616}',  # 2**64
    '{"n":-9223372036854775809}',  # one below the smallest int64: 19 digits
    '{"n":18446744073709551615,"m":-9223372036854775808}',  # the 64-bit bounds
    '{"label":"1234567890123456789012"}',  # a long number in a string: decoded as it is, whoever decodes it
    '{"x":1e400}',
    '{"x":NaN,"y":-Infinity}',
])
def test_loads_takes_what_orjson_refuses_as_the_standard_library_does(text: str) -> None:
    assert repr(loads(text.encode())) == repr(json.loads(text))


@pytest.mark.parametrize('cut', [
    LINE[:40],  # a line cut short
    LINE[:LINE.index(b'\xc3') + 1],  # cut inside a character
    b'',
    b'\xff{}',
])
def test_loads_of_a_broken_line_raises_a_value_error(cut: bytes) -> None:
    with pytest.raises(ValueError):  # what deploywatch.kube.loop turns into OddStream
        loads(cut)
