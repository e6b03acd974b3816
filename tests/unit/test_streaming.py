"""
What deploywatch's own LIST and WATCH loops promise beyond the events (``streaming``, ``watching``).

* A listing holds Python's cyclic garbage collector off while it delivers
  (``watching.Listing``, paginated or streamed). Measured, not asserted here: with the collector on, it walked
  each 500-object page again after every few objects, a tenth of the start-up at 20,000
  Deployments. What is asserted is the promise that makes holding it safe: it is on
  again once the listing ends, however it ends, and not before the last of several
  listings at once (inside one another, or interleaved on the loop) is done.
* A watch stream ends once it has been silent for the inactivity timeout, and events
  keep it open, though they restart the timeout only now and then
  (``streaming.RESTART_GRAIN``).
"""
import asyncio
import gc
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import kopf
import pytest

from deploywatch.base.metrics import Watch
from deploywatch.kube import listwatch as streaming
from deploywatch.kube import loop as watching
from deploywatch.kube import pages as listing_pages

PAGES = [[{'metadata': {'uid': f'u-{page}-{index}'}} for index in range(3)] for page in range(2)]


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    assert gc.isenabled()
    yield
    gc.enable()  # whatever a failed test left


@pytest.fixture
def pages(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Two pages served by a stand-in for Kopf's LIST; whether the collector ran as each was served."""
    served: list[bool] = []

    async def fetch_objs(**_: Any) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        for page in PAGES:
            served.append(gc.isenabled())
            yield page, '42'

    monkeypatch.setattr(streaming, 'fetch_objs', fetch_objs)
    return served


def relist(deliver: watching.Deliver) -> str:
    async def paused_by(_: Any) -> None:
        pass

    outlet = watching.Outlet(deliver=deliver, unlisted=lambda namespace, listed: [], replaced=lambda obj: [],
                             gate=watching.Gate(), forbidden=lambda error: None, paused_by=paused_by)
    return asyncio.run(watching._relist(
        outlet=outlet, settings=None, resource=None, namespace=None,
        watch=Watch('cluster-wide', paused=lambda: False), pace=watching.RelistPace()))


def test_the_collector_is_off_while_a_listing_is_delivered_and_on_after(pages: list[bool]) -> None:
    delivered: list[tuple[str, bool]] = []

    async def deliver(kind: str | None, obj: Any, inferred: bool) -> None:
        delivered.append((obj['metadata']['uid'], gc.isenabled()))

    version = relist(deliver)
    assert version == '42'
    assert delivered == [(obj['metadata']['uid'], False) for page in PAGES for obj in page]
    assert pages == [False, False]  # the pages are decoded under the same hold
    assert gc.isenabled()


def test_the_collector_is_on_again_when_a_delivery_fails(pages: list[bool]) -> None:
    async def deliver(kind: str | None, obj: Any, inferred: bool) -> None:
        raise RuntimeError('the writer broke')

    with pytest.raises(RuntimeError):
        relist(deliver)
    assert gc.isenabled()


class Page(list[dict[str, Any]]):
    """A page that a weak reference can follow (a list cannot)."""


def test_a_page_is_freed_before_the_next_one_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most one page decoded at a time: the one before is gone when the next is made."""
    made: list[weakref.ref[Page]] = []
    alive_before: list[bool] = []

    async def fetch_objs(**_: Any) -> AsyncIterator[tuple[Page, str]]:
        for objects in PAGES:
            alive_before.append(any(ref() is not None for ref in made))
            page = Page(objects)
            made.append(weakref.ref(page))
            yield page, '42'
            del page

    async def deliver(kind: str | None, obj: Any, inferred: bool) -> None:
        pass

    monkeypatch.setattr(streaming, 'fetch_objs', fetch_objs)
    relist(deliver)
    assert alive_before == [False, False]


def test_a_page_item_that_does_not_decode_is_an_odd_stream_a_delivery_error_is_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A page's items are decoded as they are delivered: only the page's own error is retried."""
    broken = b'{"kind":"DeploymentList","metadata":{},"items":[{"metadata":{"uid":"u-1"}},"odd"]}'

    async def fetch_objs(**_: Any) -> AsyncIterator[tuple[listing_pages.Page, str]]:
        yield listing_pages.Page.of(broken), '42'

    async def deliver(kind: str | None, obj: Any, inferred: bool) -> None:
        pass

    async def failing(kind: str | None, obj: Any, inferred: bool) -> None:
        raise ValueError('the writer\'s own')

    monkeypatch.setattr(streaming, 'fetch_objs', fetch_objs)
    with pytest.raises(watching.OddStream):
        relist(deliver)
    with pytest.raises(ValueError, match="the writer's own"):
        relist(failing)


def test_a_hold_inside_another_leaves_the_collector_to_the_outer_one() -> None:
    with streaming.collector_held():
        with streaming.collector_held():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_collector_comes_back_when_the_last_of_two_interleaved_holds_ends() -> None:
    """Two namespaces' listings on one loop: the first to end must not turn it on under the other."""
    first, second = streaming.collector_held(), streaming.collector_held()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_hold_leaves_a_collector_that_someone_else_turned_off_off() -> None:
    gc.disable()
    with streaming.collector_held():
        pass
    assert not gc.isenabled()


# The inactivity timeout of a watch stream (``streaming.watch_objs``)

SILENCE = 0.3  # the inactivity timeout of these tests, in seconds


def watched(gaps: list[float]) -> list[Any]:
    """
    What ``watch_objs`` yields from a stream that sends an event after each gap, then nothing.

    The loop's clock moves only as the stream says (each gap, then a silence as long as the
    timeout), so a machine that pauses the test cannot stretch a gap into a timeout.
    """
    settings = kopf.OperatorSettings()
    settings.watching.inactivity_timeout = SILENCE
    now = [0.0]

    async def stream(url: str, **_: Any) -> AsyncIterator[dict[str, Any]]:
        for index, gap in enumerate(gaps):
            now[0] += gap  # ``gap`` seconds pass, and nothing else happens
            await asyncio.sleep(0)  # what fell due meanwhile runs first
            yield {'type': 'MODIFIED', 'object': {'index': index}}
        now[0] += SILENCE
        await asyncio.Event().wait()  # silent, and never ending by itself

    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        now[0] = loop.time()
        loop.time = lambda: now[0]  # type: ignore[method-assign]
        task = asyncio.current_task()
        assert task is not None
        guard = threading.Timer(30, loop.call_soon_threadsafe, [task.cancel])  # a bound in real time
        guard.start()
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(streaming, '_stream', stream)
                return [event['object']['index'] async for event in streaming.watch_objs(
                    settings=settings, resource=kopf.Resource('apps', 'v1', 'deployments'), namespace=None,
                    operator_pause_waiter=None)]
        finally:
            guard.cancel()

    return asyncio.run(scenario())


def test_a_stream_that_goes_silent_ends_after_the_inactivity_timeout() -> None:
    assert watched([0.0, 0.0, 0.0]) == [0, 1, 2]


def test_a_stream_whose_events_keep_coming_is_not_ended_by_the_inactivity_timeout() -> None:
    """Events every third of the timeout for three timeouts: each restarted it."""
    gaps = [SILENCE / 3] * 9
    assert watched(gaps) == list(range(len(gaps)))


class Hanging:
    """kopf_api.request as a server that never answers: every call waits until cancelled."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = asyncio.Event()

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.started.set()
        await asyncio.Event().wait()


async def _drain(stream: AsyncIterator[Any]) -> None:
    async for _ in stream:
        pass


def test_a_pause_cancels_a_watch_request_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pause while a watch request waits for its answer cancels it, and the stream ends quietly."""
    hanging = Hanging()
    monkeypatch.setattr('deploywatch.kube.kopfcompat.request', hanging)

    async def scenario() -> None:
        stopper = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(_drain(streaming._stream('http://x', settings=None, stopper=stopper,
                                                            timeout=None)))  # type: ignore[arg-type]
        await hanging.started.wait()
        stopper.set_result(None)  # paused
        await asyncio.wait_for(task, timeout=5)  # ends quietly: a pause is not an error

    asyncio.run(scenario())


class Answered:
    """kopf_api.request answered when the test says: a response the stream closes unread."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[Any] | None = None
        self.closed = False

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.answer = asyncio.get_running_loop().create_future()
        return await self.answer

    def close(self) -> None:
        self.closed = True


def test_a_pause_with_the_answer_does_not_cancel_what_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The answer and the pause in one turn of the loop, the answer first: the pause's done-callback
    (cancel the request) ran after the task had its response and went on, and cancelled it there,
    which the watch loop took for a stop: the Deployment watch ended for good (found on a real
    server with the WatchList gate off: a change never printed in 30 s).
    """
    answered = Answered()
    monkeypatch.setattr('deploywatch.kube.kopfcompat.request', answered)

    async def watch_then_go_on(stopper: asyncio.Future[None]) -> str:
        await _drain(streaming._stream('http://x', settings=None, stopper=stopper,
                                       timeout=None))  # type: ignore[arg-type]
        for _ in range(3):
            await asyncio.sleep(0)  # the loop goes on: where a stray cancel would land
        return 'went on'

    async def scenario() -> str:
        stopper = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(watch_then_go_on(stopper))
        while answered.answer is None:
            await asyncio.sleep(0)
        answered.answer.set_result(answered)  # the answer comes ...
        stopper.set_result(None)  # ... and the pause, in the same turn
        return await asyncio.wait_for(task, timeout=5)

    assert asyncio.run(scenario()) == 'went on'
    assert answered.closed  # the pause closed the response, unread


def test_a_cancellation_during_a_pause_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Issue 20, item 1: with the stopper done, Kopf's cancellation at SIGTERM was taken for the
    pause and swallowed (this test: "DID NOT RAISE" before the fix), so the watch loop went on.
    """
    hanging = Hanging()
    monkeypatch.setattr('deploywatch.kube.kopfcompat.request', hanging)

    async def scenario() -> None:
        stopper = asyncio.get_running_loop().create_future()
        stopper.set_result(None)  # paused before the request went out
        task = asyncio.create_task(_drain(streaming._stream('http://x', settings=None, stopper=stopper,
                                                            timeout=None)))  # type: ignore[arg-type]
        await hanging.started.wait()
        task.cancel()  # what Kopf does at SIGTERM
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)

    asyncio.run(scenario())


class SlowToStop(watching.Gate):
    """
    The gate, never closed, whose waiter takes one more turn of the loop to end once
    cancelled: the turn in which the loop's block awaits it after a watch ended.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stopping = asyncio.Event()

    async def closed(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.stopping.set()
            await asyncio.sleep(0)
            raise


class WatchedAgain(BaseException):
    """A watch after the cancellation: the loop went on (not an error the loop retries)."""


def test_a_cancellation_while_a_failed_watch_closes_its_block_is_not_swallowed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Issue 20, item 1: a block that awaits its pause waiter in a ``finally`` suppressing
    CancelledError (as Kopf's ``streaming_block`` does) swallows Kopf's own cancellation at
    SIGTERM landing in that turn after a watch failed: the loop slept its backoff and
    watched again, forever.
    """
    async def fetch_objs(**_: Any) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        yield [], '1'

    async def watch_objs(**_: Any) -> AsyncIterator[dict[str, Any]]:
        if gate.stopping.is_set():
            raise WatchedAgain()
        await asyncio.sleep(0)  # the request goes out: the pause waiter starts meanwhile
        raise watching.OddStream('the watch broke')
        yield {}  # an async generator

    async def deliver(*_: Any) -> None:
        pass

    async def paused_by(_: Any) -> None:
        pass

    monkeypatch.setattr(streaming, 'fetch_objs', fetch_objs)
    monkeypatch.setattr(streaming, 'watch_objs', watch_objs)
    gate = SlowToStop()

    async def scenario() -> None:
        stream = watching.supervise(
            outlet=watching.Outlet(deliver=deliver, unlisted=lambda namespace, listed: [],
                                   replaced=lambda obj: [], gate=gate, forbidden=lambda error: None,
                                   paused_by=paused_by),
            settings=kopf.OperatorSettings(), resource=kopf.Resource('apps', 'v1', 'deployments'),
            namespace='default')
        task = asyncio.create_task(_drain(stream))
        await gate.stopping.wait()  # the watch failed: its block awaits the waiter it cancelled
        task.cancel()  # what Kopf does at SIGTERM
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)

    asyncio.run(scenario())
