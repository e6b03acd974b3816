"""
Streaming lists in the watch loop (``deploywatch.kube.loop``): what ends a listing, what is a
refusal, and the loop's requests for a scripted server, one rule at a time. The process tests
(tests/robustness/test_streaming_list.py) show the same against the emulated API server.
"""
import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import errors as kopf_errors

from deploywatch.base.metrics import Metrics, Watch
from deploywatch.kube import kopfcompat, listwatch, loop

END = {'k8s.io/initial-events-end': 'true'}


def obj(name: str, version: str) -> dict[str, Any]:
    return {'metadata': {'uid': f'u-{name}', 'namespace': 'ns', 'name': name, 'resourceVersion': version}}


def added(name: str, version: str) -> dict[str, Any]:
    return {'type': 'ADDED', 'object': obj(name, version)}


def end(version: str) -> dict[str, Any]:
    return {'type': 'BOOKMARK', 'object': {'metadata': {'resourceVersion': version, 'annotations': END}}}


def status(code: int) -> kopf_errors.APIError:
    cls = {422: kopf_errors.APIUnprocessableEntityError, 403: kopf_errors.APIForbiddenError,
           404: kopf_errors.APINotFoundError}.get(code, kopf_errors.APIClientError if code < 500
                                                  else kopf_errors.APIServerError)
    return cls(f'answered {code}', status=code, headers={})


# -- the rules -----------------------------------------------------------------------------

def test_only_the_annotated_bookmark_ends_the_initial_events() -> None:
    assert loop._ends_initial_events('BOOKMARK', end('9')['object'])
    assert not loop._ends_initial_events('BOOKMARK', obj('a', '9'))
    assert not loop._ends_initial_events('ADDED', {'metadata': {'annotations': END}})
    false = {'metadata': {'annotations': {'k8s.io/initial-events-end': 'false'}}}
    assert not loop._ends_initial_events('BOOKMARK', false)
    assert not loop._ends_initial_events('BOOKMARK', {'metadata': {'annotations': ['odd']}})


@pytest.mark.parametrize('code', [422, 400])
def test_a_422_or_400_is_a_refusal_told_once(code: int, caplog: pytest.LogCaptureFixture) -> None:
    mode = loop.ListingMode()
    assert mode.refused(status(code)) and not mode.streams
    assert mode.refused(status(code))  # another watch's answer to the same question: no second line
    lines = [r for r in caplog.records
             if r.name == 'deploywatch' and 'refuses streaming lists' in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING, lines


@pytest.mark.parametrize('error', [status(403), status(404), status(405), status(410), status(501),
                                   status(500), loop.OddStream('odd'), TimeoutError()])
def test_other_answers_are_no_refusal(error: Exception) -> None:
    mode = loop.ListingMode()
    assert not mode.refused(error) and mode.streams


# -- the loop against a scripted server ------------------------------------------------------

Response = list[dict[str, Any]] | Exception


@dataclasses.dataclass
class Server:
    """Each request of the loop gets the next scripted response; once they are used up, silence."""
    watches: list[Response]
    pages: list[list[dict[str, Any]]] = dataclasses.field(default_factory=list)
    asked: list[tuple[str, str | None]] = dataclasses.field(default_factory=list)  # (kind, since)
    quiet: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def watch_objs(self, *, since: str | None, streaming_list: bool, **_: Any) -> AsyncIterator[Any]:
        self.asked.append(('streaming list' if streaming_list else 'watch', since))
        if not self.watches:
            self.quiet.set()
            await asyncio.Event().wait()
        response = self.watches.pop(0)
        if isinstance(response, Exception):
            raise response
        for event in response:
            yield event

    async def fetch_objs(self, **_: Any) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        self.asked.append(('list', None))
        yield self.pages.pop(0), '5'


@dataclasses.dataclass
class Seen:
    delivered: list[tuple[str | None, str, bool]] = dataclasses.field(default_factory=list)
    yielded: list[Any] = dataclasses.field(default_factory=list)
    unlisted: list[set[str]] = dataclasses.field(default_factory=list)


@pytest.fixture(autouse=True)
def metrics(monkeypatch: pytest.MonkeyPatch) -> Metrics:
    """This test's own listing mode and counters, and no real waits after errors."""
    fresh = Metrics()
    monkeypatch.setattr(loop, 'MODE', loop.ListingMode())
    monkeypatch.setattr(loop, 'METRICS', fresh)
    monkeypatch.setattr(loop, 'BACKOFF_FIRST', 0.0)
    monkeypatch.setattr(loop, 'BACKOFF_LIMIT', 0.0)
    return fresh


def play(server: Server, monkeypatch: pytest.MonkeyPatch) -> Seen:
    """Run the loop until the script is used up; what it delivered and yielded."""
    monkeypatch.setattr(listwatch, 'watch_objs', server.watch_objs)
    monkeypatch.setattr(listwatch, 'fetch_objs', server.fetch_objs)
    monkeypatch.setattr(loop.RelistPace, 'wait', lambda self: asyncio.sleep(0))
    seen = Seen()

    async def deliver(kind: str | None, body: Any, inferred: bool) -> None:
        seen.delivered.append((kind, body['metadata']['name'], inferred))

    def unlisted(namespace: Any, listed: set[str]) -> list[dict[str, Any]]:
        seen.unlisted.append(set(listed))
        return [obj('gone', '1')] if len(seen.unlisted) == 1 else []

    async def paused_by(_: Any) -> None:
        pass

    outlet = loop.Outlet(deliver=deliver, unlisted=unlisted, replaced=lambda body: [], gate=loop.Gate(),
                         forbidden=lambda error: None, paused_by=paused_by)

    async def scenario() -> None:
        async def consume() -> None:
            async for item in loop._list_and_watch(outlet=outlet, settings=kopf.OperatorSettings(),
                                                   resource=None, namespace='ns',
                                                   watch=Watch('in ns', paused=lambda: False)):
                seen.yielded.append(item)

        task = asyncio.create_task(consume())
        try:
            await asyncio.wait_for(server.quiet.wait(), timeout=10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    return seen


def test_the_initial_events_are_the_listing_and_the_same_response_goes_on_as_the_watch(
        monkeypatch: pytest.MonkeyPatch, metrics: Metrics) -> None:
    modified = {'type': 'MODIFIED', 'object': obj('a', '10')}
    server = Server([[added('a', '3'), added('b', '4'), end('9'), modified]])
    seen = play(server, monkeypatch)
    assert seen.delivered == [(None, 'a', False), (None, 'b', False), ('DELETED', 'gone', True),
                              ('MODIFIED', 'a', False)]
    assert len(seen.unlisted) == 1 and len(seen.unlisted[0]) == 2, seen.unlisted  # a and b listed
    assert seen.yielded == [kopfcompat.LISTED]
    assert server.asked == [('streaming list', None), ('watch', '10')]  # resumed from the last event
    assert metrics.listed == 2 and metrics.relists == 0
    assert metrics.watch_events['ADDED'] == 0 and metrics.watch_events['MODIFIED'] == 1


def test_a_streaming_list_cut_before_its_end_is_listed_again_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Server([[added('a', '3')], [added('a', '3'), added('b', '4'), end('9')]])
    seen = play(server, monkeypatch)
    assert server.asked == [('streaming list', None), ('streaming list', None), ('watch', '9')]
    assert len(seen.unlisted) == 1  # one complete listing: the inferred DELETEDs after it only
    assert seen.yielded == [kopfcompat.LISTED]


def test_a_410_among_the_initial_events_lists_again(monkeypatch: pytest.MonkeyPatch) -> None:
    expired = {'type': 'ERROR', 'object': {'code': 410, 'reason': 'Expired'}}
    server = Server([[added('a', '3'), expired], [added('a', '3'), end('9')]])
    play(server, monkeypatch)
    assert server.asked == [('streaming list', None), ('streaming list', None), ('watch', '9')]


def test_a_modified_among_the_initial_events_is_an_odd_stream_listed_again(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    server = Server([[added('a', '3'), {'type': 'MODIFIED', 'object': obj('a', '4')}, end('4')],
                     [added('a', '4'), end('9')]])
    seen = play(server, monkeypatch)
    assert server.asked == [('streaming list', None), ('streaming list', None), ('watch', '9')]
    assert ('MODIFIED', 'a', False) not in seen.delivered
    assert any('a MODIFIED event among the initial events' in r.getMessage() for r in caplog.records)


def test_a_refusal_lists_with_pages_from_then_on_even_after_a_410(monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    server = Server([status(422), status(410)], pages=[[obj('a', '3')], [obj('a', '3')]])
    seen = play(server, monkeypatch)
    assert server.asked == [('streaming list', None), ('list', None), ('watch', '5'), ('list', None),
                            ('watch', '5')]
    assert seen.yielded == [kopfcompat.LISTED, kopfcompat.LISTED]
    assert sum('refuses streaming lists' in r.getMessage() for r in caplog.records) == 1


def test_a_403_on_a_streaming_list_is_no_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Server([status(403), [added('a', '3'), end('9')]])
    play(server, monkeypatch)
    assert server.asked == [('streaming list', None), ('streaming list', None), ('watch', '9')]
    assert loop.MODE.streams
