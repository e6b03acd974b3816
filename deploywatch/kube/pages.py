"""
A LIST page, decoded one item at a time, as its body arrives.

Decoded whole, a page of Deployments takes some ten times its JSON in Python objects
(~50 KB for a 5.4 KB Deployment), so the page size was the client's memory: 500 a page,
where the API server pays per page (a page of 2,000 cost a v1.37 server 15 % less CPU for
20,000 Deployments than pages of 500; README, "What a listing costs the API server").
Kept as bytes and decoded item by item, a page costs its JSON and one decoded object.

kube-apiserver writes a page as it encodes it: the first of a 2,000-item page's 10 MB
arrives within some 15 ms, the last after 100 (v1.37, loopback). So a page is fed as it
arrives (:meth:`Page.feed`), and iterating it gives the items that have arrived whole since
the last iteration: the first page's objects are printed while the rest is still coming,
not after it all came. The list's metadata (resourceVersion, the continue token) comes first.

The items are cut where kube-apiserver's compact JSON has ``},{"metadata":`` — an object
ending and the next one beginning with its metadata. Inside a JSON string a quote is always
escaped, so the sequence occurs only between objects; a cut between two objects of a nested
array instead leaves an unclosed bracket on either side, and the item does not decode. Then,
or when the page is not laid out as kube-apiserver lays it out (another server, a proxy that
encodes it again with spaces or in another key order), the page is decoded whole once it has
all arrived, as before, and the items not iterated yet are taken from it: the ones already
iterated were whole items, since each decoded.
"""
from collections.abc import Iterator
from typing import Any

from deploywatch.base.encoding import loads

ITEMS = b',"items":['  # the list's last key, after kind, apiVersion and metadata
SEPARATOR = b'},{"metadata":'
END = b']}'
BLANK = b' \t\r\n'


class Page:
    """A page as it arrives: :meth:`feed` it, :meth:`end` it; iterate it for the items arrived since."""

    def __init__(self) -> None:
        self._raw = bytearray()
        self._ended = False
        self._head: dict[str, Any] | None = None  # the list without its items (or whole, the fallback)
        self._items: list[Any] | None = None  # decoded whole: the fallback
        self._cutting = False  # the head has come, laid out as expected: the items are cut
        self._headless = False  # the head is not laid out as expected: decoded whole once ended
        self._start = 0  # where the next item to cut begins
        self._searched = 0  # where the search for the head or the next separator goes on
        self._index = 0  # items iterated so far
        self._kind: str | None = None
        self._api_version: Any = None

    @classmethod
    def of(cls, raw: bytes) -> 'Page':
        """A page that has all arrived."""
        page = cls()
        page.feed(raw)
        page.end()
        return page

    def feed(self, data: bytes) -> None:
        """More of the body."""
        self._raw += data
        if self._head is None and not self._headless:
            self._find_head()

    def end(self) -> None:
        """The body has all arrived."""
        self._ended = True

    @property
    def metadata(self) -> dict[str, Any] | None:
        """
        The list's metadata; None while it has not arrived. Once the page has ended, a
        ValueError if it is not a listing.
        """
        if self._head is None and self._ended:
            self._whole()
        if self._head is None:
            return None
        metadata = self._head.get('metadata')
        return metadata if isinstance(metadata, dict) else {}

    def _find_head(self) -> None:
        """The list without its items, once its metadata has arrived, laid out as expected."""
        raw = self._raw
        at = raw.find(ITEMS, self._searched)
        if at < 0:
            self._searched = max(0, len(raw) - len(ITEMS) + 1)
            return
        try:
            head = loads(raw[:at] + b'}')
        except ValueError:
            head = None
        if not isinstance(head, dict) or not isinstance(head.get('metadata'), dict):
            self._headless = True
            return
        self._take(head)
        self._cutting = True
        self._start = self._searched = at + len(ITEMS)

    def _take(self, head: dict[str, Any]) -> None:
        self._head = head
        kind, version = head.get('kind'), head.get('apiVersion')
        self._kind = kind.removesuffix('List') if isinstance(kind, str) else None
        self._api_version = version

    def _whole(self) -> None:
        """The page decoded at once (the fallback): a ValueError if it is not a JSON object."""
        page = loads(self._raw)
        if not isinstance(page, dict):
            raise ValueError(f'the listing is not a JSON object: {str(page)[:100]}')
        items = page.get('items')
        if items is not None and not isinstance(items, list):
            raise ValueError(f'the listing\'s items are not a list: {str(items)[:100]}')
        self._items = items or []
        self._take(page)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The items arrived whole and not iterated yet: all those left, once the page has ended."""
        if self._cutting:
            yield from self._cut()
            if self._cutting:  # waiting for more, or done
                return
        if not self._ended:
            return
        if self._items is None:
            self._whole()
        assert self._items is not None
        while self._index < len(self._items):
            item = self._items[self._index]
            if not isinstance(item, dict):
                raise ValueError(f'an item of the listing is not a JSON object: {str(item)[:100]}')
            self._index += 1
            yield self._typed(item)

    def _cut(self) -> Iterator[dict[str, Any]]:
        """Cut items while whole ones are there; ``_cutting`` off if the page must be decoded whole."""
        raw = self._raw
        while True:
            start = self._start
            cut = raw.find(SEPARATOR, self._searched)  # never before start: both move on together
            if cut >= 0:
                stop = cut + 1
            elif not self._ended:
                self._searched = max(start, len(raw) - len(SEPARATOR) + 1)
                return
            else:
                stop = self._items_end()
                if stop < 0:  # it does not end as a list does: decoded whole
                    self._cutting = False
                    return
                if start >= stop:  # every item cut
                    return
            try:
                item = loads(raw[start:stop])
            except ValueError:
                item = None
            if not isinstance(item, dict):  # not cut between items: the whole page, from here
                self._cutting = False
                return
            self._index += 1
            self._start = self._searched = stop + 1  # past the comma
            yield self._typed(item)
            del item

    def _items_end(self) -> int:
        """Where the last item ends, in a page that has ended; -1 if it does not end as a list does."""
        raw, end = self._raw, len(self._raw)
        while end and raw[end - 1] in BLANK:  # not raw.rstrip(): a copy of the whole page
            end -= 1
        end -= len(END)
        return end if raw[end:end + len(END)] == END else -1

    def _typed(self, item: dict[str, Any]) -> dict[str, Any]:
        """List items carry no kind/apiVersion: the list's, as Kopf sets them."""
        if self._kind is not None:
            item.setdefault('kind', self._kind)
        if self._api_version is not None:
            item.setdefault('apiVersion', self._api_version)
        return item
