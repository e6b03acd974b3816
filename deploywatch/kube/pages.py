"""
A LIST page, decoded one item at a time as it is delivered.

Decoded whole, a page of Deployments takes some ten times its JSON in Python objects
(~50 KB for a 5.4 KB Deployment), so the page size was the client's memory: 500 a page,
where the API server pays per page (a page of 2,000 cost a v1.37 server 15 % less CPU for
20,000 Deployments than pages of 500; README, "What a listing costs the API server").
Kept as bytes and decoded item by item, a page costs its JSON and one decoded object.

The items are cut where kube-apiserver's compact JSON has ``},{"metadata":`` — an object
ending and the next one beginning with its metadata. Inside a JSON string a quote is always
escaped, so the sequence occurs only between objects; a cut between two objects of a nested
array instead leaves an unclosed bracket on either side, and the item does not decode. Then,
or when the page is not laid out as kube-apiserver lays it out (another server, a proxy that
encodes it again with spaces or in another key order), the page is decoded whole, as before,
and the items not delivered yet are taken from it: the ones already delivered were whole
items, since each decoded.
"""
from collections.abc import Iterator
from typing import Any

from deploywatch.base.encoding import loads

ITEMS = b',"items":['  # the list's last key, after kind, apiVersion and metadata
SEPARATOR = b'},{"metadata":'
END = b']}'
BLANK = b' \t\r\n'


class Page:
    """The list's metadata at once; its items (with the list's kind and apiVersion) as iterated."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._items: list[Any] | None = None  # decoded whole: the fallback
        self._start = self._end = 0
        head = self._head(raw)
        if head is None:
            head = self._whole()
        metadata = head.get('metadata')
        self.metadata: dict[str, Any] = metadata if isinstance(metadata, dict) else {}
        kind, version = head.get('kind'), head.get('apiVersion')
        self._kind = kind.removesuffix('List') if isinstance(kind, str) else None
        self._api_version = version

    def _head(self, raw: bytes) -> dict[str, Any] | None:
        """The list without its items, and where they are; None: not laid out as expected."""
        at = raw.find(ITEMS)
        end = len(raw)
        while end and raw[end - 1] in BLANK:  # not raw.rstrip(): a copy of the whole page
            end -= 1
        end -= len(END)
        if at < 0 or end < at + len(ITEMS) or raw[end:end + len(END)] != END:
            return None
        try:
            head = loads(raw[:at] + b'}')
        except ValueError:
            return None
        if not isinstance(head, dict):
            return None
        self._start, self._end = at + len(ITEMS), end
        return head

    def _whole(self) -> dict[str, Any]:
        """The page decoded at once (the fallback): a ValueError if it is not a JSON object."""
        page = loads(self._raw)
        if not isinstance(page, dict):
            raise ValueError(f'the listing is not a JSON object: {str(page)[:100]}')
        items = page.get('items')
        if items is not None and not isinstance(items, list):
            raise ValueError(f'the listing\'s items are not a list: {str(items)[:100]}')
        self._items = items or []
        return page

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._items is not None:
            yield from self._typed_from(0)
            return
        raw, start, end, index = self._raw, self._start, self._end, 0
        while start < end:
            cut = raw.find(SEPARATOR, start, end)
            stop = end if cut < 0 else cut + 1
            try:
                item = loads(raw[start:stop])
            except ValueError:
                item = None
            if not isinstance(item, dict):  # not cut between items: the whole page, from here
                self._whole()
                yield from self._typed_from(index)
                return
            yield self._typed(item)
            del item
            index, start = index + 1, stop + 1  # past the comma

    def _typed_from(self, index: int) -> Iterator[dict[str, Any]]:
        assert self._items is not None
        for item in self._items[index:]:
            if not isinstance(item, dict):
                raise ValueError(f'an item of the listing is not a JSON object: {str(item)[:100]}')
            yield self._typed(item)

    def _typed(self, item: dict[str, Any]) -> dict[str, Any]:
        """List items carry no kind/apiVersion: the list's, as Kopf sets them."""
        if self._kind is not None:
            item.setdefault('kind', self._kind)
        if self._api_version is not None:
            item.setdefault('apiVersion', self._api_version)
        return item
