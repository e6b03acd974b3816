"""
The LIST and WATCH requests of deploywatch's loop: Kopf's requests, decoded by orjson.

``deploywatch.kube.loop`` builds its loop from Kopf's ``fetch_objs`` and
``watch_objs``. Both decode with the standard library, and that decoding was the
largest single cost outside the tracker (docs/scale.md, "Where the time goes"). So
this module has the two functions with the same signatures, doing what Kopf's do,
except for the decoding:

* every request is still Kopf's (``kopfcompat.request``), looked up at call time: its
  credentials (``@authenticated``: the login handlers, re-login on 401), its
  retries (``settings.networking.error_backoffs``, which the loop shortens), and
  ``deploywatch.kube.loop``'s wrapper that notes each answer for stall detection;
* the query is built as Kopf builds it (selectors, ``chunk_size``, bookmarks,
  ``timeoutSeconds``), and the stream is Kopf's too:
  the inactivity timeout (``settings.watching.inactivity_timeout``) restarted by
  the events (at most every :data:`RESTART_GRAIN` of it), the pause
  (``operator_pause_waiter``) closing the response, a closed connection ending the
  stream quietly;
* lines are split by Kopf's ``iter_jsonlines``, so a response cut in the middle of
  a line still reaches the decoder without its newline and fails to decode, which
  ``deploywatch.kube.loop`` turns into ``OddStream`` (a ``ValueError``);
* what orjson refuses, or would decode differently, is decoded by ``json.loads``
  (see ``encoding.loads``), so every document decodes to what it did:
  integers beyond 64 bits (which orjson makes floats), lone surrogate escapes
  (``"\\ud800"``: JSON allows them, UTF-8 cannot hold them), ``NaN``, ``1e400``.
  A line that neither decodes raises the standard library's error, as Kopf's did.

Kopf's pieces are reached through ``deploywatch.kube.kopfcompat``, which checks them at start-up.
"""
import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, cast

import aiohttp
from isal import isal_zlib

from deploywatch.base.encoding import loads
from deploywatch.kube import kopfcompat
from deploywatch.kube.pages import Page

# The inactivity timeout is restarted by an event only once this share of it has passed since
# it last was: a silent stream still ends after 99-100 % of the timeout, and a burst does not
# pay asyncio a new timer per event.
RESTART_GRAIN = 0.01


def gunzip_with_isal() -> None:
    """
    aiohttp (Kopf's HTTP client, so every response of the process) gunzips with ISA-L.

    A LIST page over 128 KiB comes gzipped (aiohttp asks for it, and a cluster's network
    gains tenfold), and aiohttp gunzips it on the event loop, as it reads: ~5.6 µs per
    5.4 KB Deployment with zlib, ~1.1 with ISA-L's inflate (``isal``, the backend aiohttp's
    ``set_zlib_backend`` was made for), the same bytes.
    """
    aiohttp.set_zlib_backend(isal_zlib)


@contextlib.contextmanager
def collector_held() -> Iterator[None]:
    """
    Python's cyclic garbage collector held off until the last block open ends.

    A LIST page is some 100,000 new dicts and lists per 500 Deployments: the collector,
    triggered every 700 allocations, walks them again and again while they are built and
    delivered. So ``deploywatch.kube.loop`` holds it for a whole listing. Decoded JSON and
    what is built from it hold no reference cycles, so there is nothing to collect in them
    meanwhile; the collector runs as usual after, when the pages are freed by reference
    counts alone (docs/scale.md has what it cost).

    The holds are counted, not nested: the watch loops of several namespaces list at once,
    on one event loop, and the collector comes back when the last of them is done. If
    someone else turned it off, it is left off.
    """
    global _holds  # noqa: PLW0603  (one count for the process, as the collector is one)
    if not _holds and not gc.isenabled():
        yield
        return
    _holds += 1
    gc.disable()
    try:
        yield
    finally:
        _holds -= 1
        if not _holds:
            gc.enable()


_holds = 0  # collector_held blocks open now


def _json_only(response: aiohttp.ClientResponse) -> None:
    """aiohttp's ``response.json()`` check of the content type, without its decoding."""
    content_type = response.headers.get('Content-Type', '').lower()
    if 'json' not in content_type:
        message = f'Attempt to decode JSON with unexpected mimetype: {content_type}'
        raise aiohttp.ContentTypeError(response.request_info, response.history, status=response.status,
                                       message=message, headers=response.headers)


def _selectors(settings: Any, resource: Any) -> dict[str, str]:
    """The label, field and shard selectors of the resource, as Kopf puts them in a query."""
    label_selector = ','.join(sorted(set(settings.watching.label_selectors.collect(resource))))
    field_selector = ','.join(sorted(set(settings.watching.field_selectors.collect(resource))))
    shard_selector, *_ = settings.watching.shard_selectors.collect(resource) or ['']
    params: dict[str, str] = {}
    if label_selector:
        params['labelSelector'] = label_selector
    if field_selector:
        params['fieldSelector'] = field_selector
    if shard_selector:
        params['shardSelector'] = shard_selector
    return params


async def fetch_objs(*, settings: Any, resource: Any, namespace: Any,
                     logger: Any) -> AsyncIterator[tuple[Iterable[dict[str, Any]], str]]:
    """
    Kopf's ``fetch_objs``: the objects page by page, with the listing's resourceVersion; a
    page is yielded again as more of it arrives, each time with the items arrived since
    (``pages.Page``): the first objects are delivered while the page is still coming.

    Each next page is asked for as soon as the page before has arrived and is the one
    delivered, and arrives while that one is delivered: the caller yields to the loop now
    and then while it delivers (``deploywatch.kube.loop``), and the API server (another
    process, maybe another machine) serves the next page meanwhile. One page waited for the
    one before to be printed whole, and the API server for the request: a tenth of the
    start-up at 20,000 Deployments.
    """
    params: dict[str, str] = {}
    if settings.watching.chunk_size is not None:
        params['limit'] = str(settings.watching.chunk_size)
    params.update(_selectors(settings, resource))

    async def ask(continue_token: str) -> aiohttp.ClientResponse:
        query = {**params, 'continue': continue_token} if continue_token else params
        response: aiohttp.ClientResponse = await kopfcompat.request(
            'get', resource.get_url(namespace=namespace, params=query), settings=settings, logger=logger)
        return response

    arrival: _Arrival | None = _Arrival(ask, '')  # the last page has "" (or no) continue token
    try:
        while arrival is not None:
            arrival.take()
            page = arrival.page
            while (metadata := page.metadata) is None:
                await arrival.more()
            version = cast(str, metadata.get('resourceVersion'))  # Kopf's: None if none was sent
            while True:
                ended = arrival.ended()
                yield page, version
                if ended:
                    break
                await arrival.more()
            del page  # one page held at a time, not two
            arrival = arrival.next
    finally:
        if arrival is not None:  # the caller stopped listening (a pause, an error): nobody awaits it
            arrival.cancel()


class _Arrival:
    """
    One page's body, read into a :class:`pages.Page` by a task of its own as it arrives. The
    next page (:attr:`next`) is asked for once this one has all arrived and is taken
    (:meth:`take`): one page ahead of the one delivered, never more.
    """

    def __init__(self, ask: Callable[[str], Awaitable[aiohttp.ClientResponse]], continue_token: str) -> None:
        self.page = Page()
        self.next: _Arrival | None = None
        self._ask = ask
        self._taken = False
        self._continue = ''
        self._fed = asyncio.Event()
        self._task = asyncio.create_task(self._read(continue_token))

    async def _read(self, continue_token: str) -> None:
        try:
            response = await self._ask(continue_token)
            async with response:
                _json_only(response)
                async for data in response.content.iter_any():
                    self.page.feed(data)
                    self._fed.set()
            self.page.end()
            metadata = self.page.metadata or {}  # a ValueError if it is not a listing
            self._continue = metadata.get('continue') or ''
            if self._taken:
                self._ask_next()
        finally:
            self._fed.set()

    def take(self) -> None:
        """This page is the one delivered now."""
        self._taken = True
        if self._task.done():  # a read that failed has no continue token: nothing is asked
            self._ask_next()

    def _ask_next(self) -> None:
        if self._continue and self.next is None:
            self.next = _Arrival(self._ask, self._continue)

    def ended(self) -> bool:
        """Whether the body has all arrived (the reading's error, if it failed)."""
        if self._task.done():
            self._task.result()
            return True
        return False

    async def more(self) -> None:
        """
        Until more of the body has arrived, or it all has (the reading's error, if it failed).
        Called when the caller has taken all that arrived: nothing arrives before it waits.
        """
        if not self._task.done():
            self._fed.clear()
            await self._fed.wait()
        self.ended()

    def cancel(self) -> None:
        for arrival in (self, self.next):
            if arrival is not None:
                arrival._task.add_done_callback(_retrieved)
                arrival._task.cancel()


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Take a dropped task's outcome, so that asyncio does not report it as never retrieved."""
    if not task.cancelled():
        task.exception()


async def watch_objs(*, settings: Any, resource: Any, namespace: Any, since: str | None = None,
                     operator_pause_waiter: Any) -> AsyncIterator[dict[str, Any]]:
    """Kopf's ``watch_objs``: the events of one watch request, until it ends, pauses or goes silent."""
    params = {'watch': 'true', 'allowWatchBookmarks': 'true', **_selectors(settings, resource)}
    if since is not None:
        params['resourceVersion'] = since
    if settings.watching.server_timeout is not None:
        params['timeoutSeconds'] = str(settings.watching.server_timeout)
    connect_timeout = (
        settings.watching.connect_timeout if settings.watching.connect_timeout is not None else
        settings.networking.connect_timeout if settings.networking.connect_timeout is not None else
        settings.networking.request_timeout)
    timeout = aiohttp.ClientTimeout(total=settings.watching.client_timeout, sock_connect=connect_timeout)
    silence = settings.watching.inactivity_timeout
    loop = asyncio.get_running_loop()
    restarted = loop.time()
    try:
        async with asyncio.timeout(silence) as inactivity:
            url = resource.get_url(namespace=namespace, params=params)
            stream = _stream(url, settings=settings, timeout=timeout, stopper=operator_pause_waiter)
            async for event in stream:
                yield event
                if silence is not None and loop.time() - restarted >= silence * RESTART_GRAIN:
                    restarted = loop.time()
                    inactivity.reschedule(restarted + silence)
    except TimeoutError:
        where = f'in {namespace!r}' if namespace is not None else 'cluster-wide'
        kopfcompat.watch_logger.debug(f"Watch-stream for {resource} {where} is inactive, reconnecting.")
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
        pass


async def _stream(url: str, *, settings: Any, stopper: Any,
                  timeout: aiohttp.ClientTimeout) -> AsyncIterator[dict[str, Any]]:
    """
    Kopf's ``api.stream``: before the response headers, the stopper cancels the request;
    after them, it closes the response (which ends the stream quietly). Only the stopper's
    own cancellation ends it quietly: any other one, Kopf's at shutdown included, is raised,
    even while paused, or the watch loop would go on and the process never exit.
    """
    task = asyncio.current_task()  # a done-callback runs outside any task: it is taken now
    assert task is not None
    paused = in_flight = False

    def cancel_request(_: Any) -> None:
        # A done-callback is only scheduled when the stopper is done: by the time it runs, the
        # answer may have come and this task gone on. Cancelled then, the task would take the
        # pause's cancel for a stop, and the watch would end for good.
        nonlocal paused
        if in_flight:
            paused = True
            task.cancel()

    if stopper is not None and not stopper.done():
        stopper.add_done_callback(cancel_request)
    try:
        in_flight = True
        response = await kopfcompat.request('get', url, settings=settings, timeout=timeout,
                                          logger=kopfcompat.watch_logger)
    except asyncio.CancelledError:
        if paused and task.cancelling() == 1:  # only the pause's own cancel: end quietly
            task.uncancel()
            return
        raise  # anyone else's (Kopf's at SIGTERM) always wins
    finally:
        in_flight = False
        if stopper is not None:
            stopper.remove_done_callback(cancel_request)
    if stopper is not None and stopper.done():
        response.close()
        return

    def close_response(_: Any) -> None:
        response.close()

    if stopper is not None:
        stopper.add_done_callback(close_response)
    try:
        async with response:
            async for line in kopfcompat.iter_jsonlines(response.content):
                yield loads(line)
    except aiohttp.ClientConnectionError:
        if stopper is None or not stopper.done():
            raise
    finally:
        if stopper is not None:
            stopper.remove_done_callback(close_response)
