"""
``listwatch.fetch_objs``: a LIST page is delivered as it arrives, and the next one is asked
for once it has arrived, one page ahead of the one delivered and never more. Kopf's request
is replaced by a stand-in whose bodies arrive when the test lets them.
"""
import asyncio
import types
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from deploywatch.kube import kopfcompat, listwatch

SETTINGS = types.SimpleNamespace(watching=types.SimpleNamespace(chunk_size=3))


class Resource:
    def get_url(self, *, namespace: Any, params: dict[str, str]) -> str:
        return params.get('continue', 'first')


def body(page: int, *, last: bool) -> bytes:
    metadata = {'resourceVersion': '42', **({} if last else {'continue': f'page-{page + 1}'})}
    items = [{'metadata': {'name': f'web-{page}-{n}', 'uid': f'u-{page}-{n}'}} for n in range(3)]
    return orjson.dumps({'kind': 'DeploymentList', 'apiVersion': 'apps/v1', 'metadata': metadata,
                         'items': items}) + b'\n'


class Server:
    """
    Each page's body arrives in the pieces the test puts in its queue (None: the end, an
    exception: the connection's error).
    """

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.pieces: dict[str, asyncio.Queue[bytes | Exception | None]] = {}
        self.read_whole: dict[str, asyncio.Event] = {}

    def queue(self, url: str) -> asyncio.Queue[bytes | Exception | None]:
        self.read_whole.setdefault(url, asyncio.Event())
        return self.pieces.setdefault(url, asyncio.Queue())

    async def request(self, method: str, url: str, **_: Any) -> Any:
        self.asked.append(url)
        return Response(self.queue(url), self.read_whole[url])


class Response:
    headers = {'Content-Type': 'application/json'}

    def __init__(self, pieces: asyncio.Queue[bytes | Exception | None], read_whole: asyncio.Event) -> None:
        self.content = self
        self._pieces, self._read_whole = pieces, read_whole

    async def iter_any(self) -> AsyncIterator[bytes]:
        while (piece := await self._pieces.get()) is not None:
            if isinstance(piece, Exception):
                raise piece
            yield piece
        self._read_whole.set()

    async def __aenter__(self) -> 'Response':
        return self

    async def __aexit__(self, *_: Any) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Server:
    made = Server()
    monkeypatch.setattr(kopfcompat, 'request', made.request)
    monkeypatch.setattr(listwatch, '_selectors', lambda settings, resource: {})
    return made


def names(page: Any) -> list[str]:
    return [obj['metadata']['name'] for obj in page]


async def within(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, timeout=10)  # a failure, not a hang


def test_a_page_is_delivered_as_it_arrives_and_the_next_asked_for_once_it_has(server: Server) -> None:
    async def main() -> None:
        first = body(0, last=False)
        cut = first.index(b'},{"metadata":{"name":"web-0-2"') + len(b'},{"metadata":') + 5
        server.queue('first').put_nowait(first[:cut])  # two items whole, the third begun
        listing = listwatch.fetch_objs(settings=SETTINGS, resource=Resource(), namespace=None, logger=None)
        page, version = await within(anext(listing))
        assert version == '42' and names(page) == ['web-0-0', 'web-0-1']
        assert server.asked == ['first']  # the rest of the page has not arrived

        server.queue('first').put_nowait(first[cut:])
        server.queue('first').put_nowait(None)
        page, _ = await within(anext(listing))
        assert names(page) == ['web-0-2']
        await within(server.read_whole['first'].wait())
        await asyncio.sleep(0)  # one turn of the loop: the next page's request task starts
        assert server.asked == ['first', 'page-1']

        second = server.queue('page-1')  # it all arrives while the first is still delivered
        second.put_nowait(body(1, last=False))
        second.put_nowait(None)
        await within(server.read_whole['page-1'].wait())
        await asyncio.sleep(0)
        assert server.asked == ['first', 'page-1']  # not two pages ahead

        delivered = []
        third = server.queue('page-2')
        third.put_nowait(body(2, last=True))
        third.put_nowait(None)
        async for page, _ in listing:
            delivered += names(page)
        assert delivered == [f'web-{p}-{n}' for p in (1, 2) for n in range(3)]
        assert server.asked == ['first', 'page-1', 'page-2']

    asyncio.run(main())


def test_an_error_while_a_page_arrives_ends_the_listing_after_the_items_arrived_whole(server: Server) -> None:
    async def main() -> None:
        first = body(0, last=False)
        cut = first.index(b'},{"metadata":{"name":"web-0-1"') + len(b'},{"metadata":') + 5
        server.queue('first').put_nowait(first[:cut])
        listing = listwatch.fetch_objs(settings=SETTINGS, resource=Resource(), namespace=None, logger=None)
        page, _ = await within(anext(listing))
        delivered = names(page)
        server.queue('first').put_nowait(ConnectionResetError('cut short'))
        with pytest.raises(ConnectionResetError, match='cut short'):
            async for page, _ in listing:
                delivered += names(page)
        assert delivered == ['web-0-0'] and server.asked == ['first']

    asyncio.run(main())


def test_a_page_that_ends_cut_short_does_not_decode(server: Server) -> None:
    async def main() -> None:
        server.queue('first').put_nowait(body(0, last=False)[:-30])
        server.queue('first').put_nowait(None)
        listing = listwatch.fetch_objs(settings=SETTINGS, resource=Resource(), namespace=None, logger=None)
        with pytest.raises(ValueError):
            async for page, _ in listing:
                list(page)
        assert server.asked == ['first']

    asyncio.run(main())
