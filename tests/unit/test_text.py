"""text.render: what a hostile Deployment puts in names, images and values is escaped visibly."""
import re
import unicodedata
from typing import Any

import pytest

from deploywatch.output.text import TextEncoder, render, visible

ESC = '\x1b'
# What a terminal would act on, or what reorders what a person reads: none may come from the cluster.
CONTROLS = re.compile('[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]')
HOSTILE = ('ok\n17:00:00.000  DELETED   default/prod\r\x1b[31mred\x1b[0m'
           '\x9b2J\x07\x00\x7f\u202eevil\u2066x\u2069')


def _event(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        'type': 'MODIFIED', 'time': '2026-12-01T10:00:00.000Z', 'namespace': 'default', 'name': 'web',
        'summary': {'replicas': 1, 'readyReplicas': 1, 'images': ['nginx:1.25']}}
    event.update(fields)
    return event


@pytest.mark.parametrize(('raw', 'shown'), [
    ('line\nbreak', r'line\nbreak'),
    ('cr\rtab\t', r'cr\rtab\t'),
    ('\x1b[31mred', r'\x1b[31mred'),
    ('nul\x00bel\x07', r'nul\x00bel\x07'),
    ('del\x7f', r'del\x7f'),
    ('c1 \x9b31m \x85', r'c1 \x9b31m \x85'),
    ('\u202eright-to-left', r'\u202eright-to-left'),
    ('\u202a\u202b\u202c\u202d', r'\u202a\u202b\u202c\u202d'),
    ('\u2066\u2067\u2068\u2069', r'\u2066\u2067\u2068\u2069'),
    ('marks \u200e\u200f\u061c', r'marks \u200e\u200f\u061c'),
    ('separators \u2028\u2029', r'separators \u2028\u2029'),
    ('a\\x1b', r'a\\x1b'),  # a literal backslash is doubled: \x1b on screen is always an escaped ESC
    ('lone \udcff', r'lone \udcff'),
    # issue 20: what renders as nothing, so that two values that differ never look the same
    ('zero\u200bwidth\u200c\u200d', r'zero\u200bwidth\u200c\u200d'),
    ('\u2060\u2061\u2062\u2063\u2064', r'\u2060\u2061\u2062\u2063\u2064'),
    ('bom\ufeff soft\u00adhyphen', r'bom\ufeff soft\xadhyphen'),
    ('hangul\u3164\u115f\uffa0 filler', r'hangul\u3164\u115f\uffa0 filler'),
    ('selector\ufe0f grapheme\u034f', r'selector\ufe0f grapheme\u034f'),
    ('tag\U000e0041', r'tag\U000e0041'),  # above U+FFFF: eight digits, never read as \ue004 then 1
])
def test_visible_escapes_what_a_terminal_would_act_on(raw: str, shown: str) -> None:
    assert visible(raw) == shown
    assert not CONTROLS.search(visible(raw))


def test_every_format_control_and_separator_character_is_escaped() -> None:
    """Cf, Zl, Zp and Cc of this Python's Unicode database: a newer Unicode adds to them."""
    categories = {'Cf', 'Zl', 'Zp', 'Cc'}
    unsafe = (chr(code) for code in range(0x110000) if unicodedata.category(chr(code)) in categories)
    assert [char for char in unsafe if visible(char) == char] == []


@pytest.mark.parametrize('text', ['nginx:1.25', 'ghcr.io/team/app@sha256:ab', 'café 日本 → ∅ …', ''])
def test_visible_leaves_ordinary_text_alone(text: str) -> None:
    assert visible(text) == text


def test_a_hostile_image_and_annotation_stay_on_one_line_and_visible() -> None:
    event = _event(summary={'replicas': 1, 'images': [f'nginx:1.25{HOSTILE}']},
                   diff=[{'op': 'replace', 'path': '/metadata/annotations/note', 'value': HOSTILE}],
                   old={'metadata': {'annotations': {'note': 'calm'}}})

    line = render(event)

    assert not CONTROLS.search(line), repr(line)
    assert r'\n17:00:00.000' in line and r'\x1b[31m' in line and r'\u202e' in line
    assert 'metadata.annotations.note calm→ok' in line


def test_colour_is_the_only_escape_sequence_on_a_terminal() -> None:
    event = _event(type='ADDED', namespace=f'ns{HOSTILE}', name=f'web{HOSTILE}',
                   summary={'replicas': 1, 'images': [HOSTILE]})

    line = render(event, colour=True)

    assert re.findall('\x1b[^m]*m', line) == ['\x1b[32m', '\x1b[0m']
    assert line.count(ESC) == 2
    assert not CONTROLS.search(line.replace('\x1b[32m', '').replace('\x1b[0m', ''))
    assert line.split()[1] == '\x1b[32mADDED\x1b[0m'


def test_hostile_keys_and_old_values_are_escaped_too() -> None:
    # A saved stream (deploywatch render) may hold anything; a real API server refuses such keys.
    event = _event(diff=[{'op': 'add', 'path': '/metadata/annotations', 'value': {f'k{HOSTILE}': 'v'}},
                         {'op': 'remove', 'path': '/metadata/labels/app'},
                         {'op': 'replace', 'path': '/spec/template/spec/containers/0/image', 'value': 'x:2'}],
                   old={'metadata': {'labels': {'app': HOSTILE}},
                        'spec': {'template': {'spec': {'containers': [{'image': f'x{HOSTILE}:1'}]}}}})

    line = render(event)

    assert not CONTROLS.search(line), repr(line)
    assert r'metadata.annotations +k' in line and r'\x1b[31m' in line


def test_the_encoder_writes_one_line_per_event() -> None:
    encode = TextEncoder(colour=True)
    hostile = _event(summary={'replicas': 1, 'images': [HOSTILE]},
                     diff=[{'op': 'add', 'path': '/metadata/annotations/note', 'value': HOSTILE}])

    first, second = encode(hostile), encode(hostile)

    assert first.count(b'\n') == 2 and first.endswith(b'\n')  # the header, then the event
    assert second.count(b'\n') == 1 and second.endswith(b'\n')
    assert second.count(b'\r') == 0 and second.count(ESC.encode()) == 2
    second.decode('utf-8')  # whole characters only
