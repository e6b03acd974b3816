"""
A LIST page decoded item by item (``deploywatch.kube.pages``): the same items as the page
decoded whole, whatever the page holds, one item decoded at a time where it is laid out as
kube-apiserver lays it out.
"""
import json
from typing import Any

import orjson
import pytest

from deploywatch.base import encoding
from deploywatch.kube import pages
from deploywatch.kube.pages import Page

METADATA = {'resourceVersion': '4242', 'continue': 'eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ', 'remainingItemCount': 7}


def item(name: str, **more: Any) -> dict[str, Any]:
    return {'metadata': {'name': name, 'namespace': 'ns', 'uid': f'u-{name}', 'resourceVersion': '1'},
            'spec': {'replicas': 1}, **more}


def listing(items: Any, *, metadata: dict[str, Any] = METADATA) -> dict[str, Any]:
    return {'kind': 'DeploymentList', 'apiVersion': 'apps/v1', 'metadata': metadata, 'items': items}


def compact(page: dict[str, Any]) -> bytes:
    """As kube-apiserver writes it: compact JSON, keys in order, and Go's encoder's newline."""
    return orjson.dumps(page) + b'\n'


def typed(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**i, 'kind': 'Deployment', 'apiVersion': 'apps/v1'} for i in items]


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the documents decoded, in order."""
    sizes: list[int] = []

    def loads(data: bytes) -> Any:
        sizes.append(len(data))
        return encoding.loads(data)

    monkeypatch.setattr(pages, 'loads', loads)
    return sizes


def test_the_items_are_decoded_one_at_a_time_as_they_are_iterated(decoded: list[int]) -> None:
    items = [item(f'web-{n}') for n in range(3)]
    raw = compact(listing(items))
    page = Page.of(raw)
    assert page.metadata == METADATA and len(decoded) == 1 and decoded[0] < len(raw) / 2  # the head only
    iterated = iter(page)
    assert next(iterated) == typed(items)[0]
    assert len(decoded) == 2 and decoded[1] == len(orjson.dumps(items[0]))  # that item alone
    assert list(iterated) == typed(items)[1:]
    assert len(decoded) == 4


@pytest.mark.parametrize('items', [[], None], ids=['empty', 'null'])
def test_a_page_without_items_has_none(items: Any) -> None:
    page = Page.of(compact(listing(items)))
    assert list(page) == [] and page.metadata == METADATA


def test_separators_inside_strings_are_not_cuts() -> None:
    tricky = item('a', note='},{"metadata":{"name":"b"}}', bracket=']}')
    items = [tricky, item('b')]
    assert list(Page.of(compact(listing(items)))) == typed(items)


def test_a_nested_array_of_objects_with_metadata_falls_back_to_the_whole_page(decoded: list[int]) -> None:
    """A cut inside an item leaves it undecodable: the rest comes from the page decoded whole."""
    nested = item('b', spec={'claims': [{'metadata': {'name': 'x'}}, {'metadata': {'name': 'y'}}]})
    items = [item('a'), nested, item('c')]
    raw = compact(listing(items))
    assert raw.count(pages.SEPARATOR) == 3  # two between items, one inside the second
    assert list(Page.of(raw)) == typed(items)  # each once, in order
    assert len(raw) in decoded  # then decoded whole


@pytest.mark.parametrize('form', ['spaced', 'items first', 'a key after the items'])
def test_a_page_laid_out_otherwise_is_decoded_whole(form: str, decoded: list[int]) -> None:
    items = [item('a'), item('b')]
    page = listing(items)
    if form == 'items first':
        page = {'items': items, **{k: v for k, v in page.items() if k != 'items'}}
    if form == 'a key after the items':
        page = {**page, 'extra': {}}
    raw = json.dumps(page).encode() if form == 'spaced' else compact(page)
    assert list(Page.of(raw)) == typed(items)
    assert decoded[-1] == len(raw)


def test_an_item_keeps_its_own_kind_and_numbers_beyond_64_bits() -> None:
    big = 2**70
    raw = compact(listing([item('a')])).replace(b'"replicas":1', b'"replicas":' + str(big).encode())
    raw = raw.replace(b'{"metadata":{"name":"a"', b'{"kind":"Other","metadata":{"name":"a"')
    (only,) = list(Page.of(raw))
    assert only['spec']['replicas'] == big and only['kind'] == 'Other' and only['apiVersion'] == 'apps/v1'


@pytest.mark.parametrize(('raw', 'why'), [
    (b'[1, 2]', 'not a JSON object'),
    (b'{"kind":"DeploymentList","items":{"a":1}}', 'items are not a list'),
    (b'{"kind":"DeploymentList","metadata":{},"items":[{"metadata":{}},"odd"]}', 'not a JSON object'),
    (b'{"kind":"DeploymentList","metadata":{},"items":[{"metadata":{}},{"metadata":', 'cut short'),
])
def test_a_page_that_is_not_a_listing_is_a_value_error(raw: bytes, why: str) -> None:
    with pytest.raises(ValueError):
        list(Page.of(raw))


def test_the_items_come_as_they_arrive_each_once_in_order() -> None:
    items = [item(f'web-{n}') for n in range(3)]
    raw = compact(listing(items))
    first_end = raw.index(pages.SEPARATOR) + 1
    page = Page()
    page.feed(raw[:20])
    assert page.metadata is None and list(page) == []  # the head has not arrived
    page.feed(raw[20:first_end + 5])  # the first item and the start of the second
    assert page.metadata == METADATA
    assert list(page) == []  # the first item is only known whole when the next one begins
    page.feed(raw[first_end + 5:-4])  # the second item whole, the third without its end
    assert list(page) == typed(items)[:2]
    assert list(page) == []
    page.feed(raw[-4:])
    assert list(page) == []  # the last item may go on until the page ends
    page.end()
    assert list(page) == typed(items)[2:]
    assert list(page) == []


@pytest.mark.parametrize('size', [1, 7, 64])
def test_a_page_fed_in_pieces_of_any_size_gives_its_items(size: int) -> None:
    nested = item('b', spec={'claims': [{'metadata': {'name': 'x'}}, {'metadata': {'name': 'y'}}]})
    for items in ([item('a'), item('b'), item('c')], [item('a'), nested, item('c')], []):
        raw = compact(listing(items))
        page, got = Page(), []
        for at in range(0, len(raw), size):
            page.feed(raw[at:at + size])
            got += list(page)
        page.end()
        got += list(page)
        assert got == typed(items)


def test_a_page_whose_head_is_not_laid_out_as_expected_waits_for_its_end(decoded: list[int]) -> None:
    items = [item('a'), item('b')]
    raw = compact({'kind': 'DeploymentList', 'apiVersion': 'apps/v1', 'items': items, 'metadata': METADATA})
    page = Page()
    page.feed(raw)
    assert page.metadata is None and list(page) == []
    page.end()
    assert page.metadata == METADATA and list(page) == typed(items)
    assert len(decoded) == 2 and decoded[1] == len(raw)  # the head without metadata, then the whole
