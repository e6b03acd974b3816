"""selectors.Selector: the label selector grammar of the API server, and how a selector matches."""
from typing import Any

import pytest

from deploywatch.base.selectors import Requirement, Selector, SelectorError
from tests.unit.selector_samples import ACCEPTED, REJECTED


def _labelled(**labels: str) -> dict[str, Any]:
    return {'metadata': {'labels': labels}}


@pytest.mark.parametrize(('text', 'why'), ACCEPTED, ids=[why for _, why in ACCEPTED])
def test_what_the_api_server_accepts_parses(text: str, why: str) -> None:
    Selector.parse(text)


@pytest.mark.parametrize(('text', 'why'), REJECTED, ids=[why for _, why in REJECTED])
def test_what_the_api_server_rejects_is_an_error_of_one_printable_line(text: str, why: str) -> None:
    with pytest.raises(SelectorError) as raised:
        Selector.parse(text)
    message = str(raised.value)
    assert message and message.isprintable(), message  # no newline, no escape: fit for one stderr line
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(('text', 'part'), [
    ('k' * 64, 'at most 63'),
    (f"{'a' * 254}/k", 'at most 253'),
    ('v=' + 'x' * 64, 'at most 63'),
    ('a/b/c', "'a/b/c'"),
    ('A.b/c', 'prefix'),
    ('a=b_', "'b_'"),
    ('a>b', 'integer'),
    ('a,', "after ','"),
    ('a in (b', "')'"),
    ('app=web\x1b[31m', r"'web\x1b[31m'"),
])
def test_the_error_says_what_is_wrong(text: str, part: str) -> None:
    with pytest.raises(SelectorError, match=None) as raised:
        Selector.parse(text)
    assert part in str(raised.value), str(raised.value)


def test_requirements_as_the_server_reads_them() -> None:
    parsed = Selector.parse('app=web, tier in (front,back), !canary, env!=, team, n>3, m<2, x notin ()')
    assert set(parsed.requirements) == {
        Requirement('app', 'in', frozenset({'web'})),
        Requirement('tier', 'in', frozenset({'front', 'back'})),
        Requirement('canary', '!exists'),
        Requirement('env', 'notin', frozenset({''})),
        Requirement('team', 'exists'),
        Requirement('n', 'gt', frozenset({'3'})),
        Requirement('m', 'lt', frozenset({'2'})),
        Requirement('x', 'notin', frozenset({''})),
    }


def test_a_nul_ends_a_token_as_in_the_go_lexer() -> None:
    # The Go lexer reads a NUL byte as the end of the string: one that ends an operator is
    # swallowed, one where a token starts ends the selector (the emulated API server sees these).
    assert Selector.parse('a=\x00web') == Selector.parse('a=web')
    assert Selector.parse('a,\x00b') == Selector.parse('a,b')
    assert Selector.parse('a\x00') == Selector.parse('a')
    with pytest.raises(SelectorError):
        Selector.parse('a\x00b')


@pytest.mark.parametrize(('selector', 'labels', 'matches'), [
    ('app=web', {'app': 'web'}, True),
    ('app=web', {'app': 'db'}, False),
    ('app=web', {}, False),
    ('app!=web', {}, True),  # != and notin also match an absent key
    ('app!=web', {'app': 'web'}, False),
    ('tier notin (a,b)', {}, True),
    ('tier in (a,b)', {'tier': 'b'}, True),
    ('app', {'app': ''}, True),
    ('!app', {'app': ''}, False),
    ('app=', {'app': ''}, True),
    ('n>3', {'n': '4'}, True),
    ('n>3', {'n': '3'}, False),
    ('n>3', {}, False),
    ('n>3', {'n': 'four'}, False),
    ('n>3', {'n': '1_0'}, False),  # Go's ParseInt takes no underscores (Python's int() would)
    ('n<3', {'n': '02'}, True),
    ('n<3', {'n': '99999999999999999999'}, False),  # beyond int64: not an integer to Go
    ('app=web,!canary', {'app': 'web'}, True),
    ('app=web,!canary', {'app': 'web', 'canary': 'yes'}, False),
    ('', {'anything': 'x'}, True),
])
def test_matching(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert Selector.parse(selector).matches(_labelled(**labels)) is matches


def test_objects_without_labels_match_as_unlabelled() -> None:
    assert Selector.parse('!app').matches({'metadata': {}})
    assert not Selector.parse('app').matches({})
