"""
The emulator sends BOOKMARKs when, and with what, real kube-apiservers v1.24 to v1.37 did.

``recordings/v1.*/watch-bookmarks-*.json`` (``record_bookmarks.py``): four watches
started together from one LIST's resourceVersion, Deployments quiet for 70 s,
one label change, 90 s more. On every version a watch gets a BOOKMARK only at
the cacher's looks (each minute after it began, and 2 s before its deadline:
148 s with ``timeoutSeconds=150``, then its end), whatever its namespace, and
only with a version newer than its own: the last one the watch cache processed
for Deployments. On v1.24 and v1.28 that is the change's, though the cluster's
had moved on (no BOOKMARK at 60 s, one at 120 s carrying the change's version).
From v1.34 the watch cache also catches up with the cluster's version now and
then (etcd progress notifications, about once a minute), at times that are
specific to the run: v1.34 caught up once between the change and 120 s (its
BOOKMARK carries a version after the change's), v1.37 before 60 s (a BOOKMARK
while the Deployments were quiet) and between 120 s and 148 s. The watch
without a resourceVersion got periodic BOOKMARKs but on v1.28; from v1.34 it
also gets one right after its ADDEDs, annotated ``k8s.io/initial-events-end``.

The same session against the emulator, its clock scaled: the cacher's minute is
``bookmark_interval`` (1 s), the change half-way between the first look and the
second, the namespaced watch's deadline 2 s after a point half-way between the
second and the third, and the other watches closed after that. The cluster's
other writes (leases, events) are played by namespaces created in each
interval, and the watch cache catches up (``Store.refresh_watch_cache``) in the
intervals where the recording shows it did. What is compared: each watch's
events (their types in order; each BOOKMARK the recorded object, its version
the same one of the session's: the LIST's, the change's or the one the cache
caught up with), what had arrived before the change, and which watch the server
ended.
"""
import copy
import dataclasses
import functools
import itertools
import json
import time
from collections.abc import Iterator

import pytest

from deploywatch.testing import ApiServer, ServerThread, factory, versions
from tests.emulator.replay import MERGE_PATCH, Client, Obj, Watch, recording

VERSIONS = versions.RECORDED
WATCHES = ['watch-bookmarks-cluster', 'watch-bookmarks-namespace', 'watch-bookmarks-other-namespace',
           'watch-bookmarks-no-version']
BASE = '/apis/apps/v1/namespaces/bm/deployments'
PERIOD = 1.0  # the emulator's bookmark_interval: the cacher's minute (bookmarkFrequency)
RECORDED_PERIOD = 60.0
PRE_TIMEOUT = 2.0  # not scaled: the cacher's fixed "deadline - 2 s"
PRE_TIMEOUT_LOOK = 3  # the namespaced watch's look before its deadline, after the looks 1 and 2
INITIAL_EVENTS_END = 'k8s.io/initial-events-end'
# When the emulator's session does what, in periods after the watches began (the looks are at 1, 2 and,
# for the namespaced watch, PRE_TIMEOUT_AT): the cluster's other writes and, where recorded, the watch
# cache catching up, in the interval before each look; the change; the end of the other watches.
BEFORE_LOOK = {1: 0.5, 2: 1.75, PRE_TIMEOUT_LOOK: 2.25}
CHANGE_AT = 1.5
PRE_TIMEOUT_AT = 2.5
END_AT = 2.75
SETTLE = 30.0  # seconds: a bound on the emulator doing what is due, never reached when it works
PAST = 1e-6  # seconds: where the replay's clock stops after each point it is moved to (Clock.to)


def events_of(exchange: Obj) -> list[Obj]:
    return [json.loads(line) for line in exchange['response']['stream_lines']]


def rv(event: Obj) -> int:
    return int(event['object']['metadata']['resourceVersion'])


def initial_events_end(event: Obj) -> bool:
    annotations = event['object']['metadata'].get('annotations') or {}
    return bool(event['type'] == 'BOOKMARK' and annotations.get(INITIAL_EVENTS_END) == 'true')


def recorded_before_change(exchange: Obj) -> list[Obj]:
    """What a recorded watch had read when the change was sent."""
    # "at" is when the write had been answered; its MODIFIED may arrive a few ms before that.
    return [e for e, at in zip(events_of(exchange), exchange['line_times'], strict=True)
            if at < exchange['change']['at'] - 1.0]


def recorded_look(at: float, exchange: Obj) -> int:
    """Which of the cacher's looks a recorded BOOKMARK came at: 1, 2 or PRE_TIMEOUT_LOOK."""
    ended = exchange['ended_by_server_at']
    if ended is not None and abs(at - (ended - PRE_TIMEOUT)) < 1:
        return PRE_TIMEOUT_LOOK
    look = round(at / RECORDED_PERIOD)
    assert look in (1, 2) and abs(at - look * RECORDED_PERIOD) < 0.1 * RECORDED_PERIOD, at
    return look


def recorded_catch_ups(version: str) -> dict[int, int]:
    """
    Where the recorded watch cache caught up with the cluster: per look, the version it had caught
    up with by then, when a BOOKMARK of that look carries a version newer than the LIST's and the
    change's before it (no other Deployment changed). The same for every watch of the look.
    """
    found: dict[int, int] = {}
    for name in WATCHES:
        exchange = recording(f'{version}/{name}')
        change = exchange['change']
        newest = int(exchange['list_before'])
        for event, at in zip(events_of(exchange), exchange['line_times'], strict=True):
            if event['type'] != 'BOOKMARK' or initial_events_end(event):
                continue
            if at > change['at']:
                newest = max(newest, int(change['resourceVersion']))
            look = recorded_look(at, exchange)
            if rv(event) > max([newest, *(v for k, v in found.items() if k < look)]):
                assert found.setdefault(look, rv(event)) == rv(event), (name, look)
    return found


def labels(events: list[Obj], known: dict[int, str]) -> list[tuple[str, str | None]]:
    """Each event's type and, for a BOOKMARK, which of the session's versions it carries."""
    return [(e['type'], known.get(rv(e), str(rv(e))) if e['type'] == 'BOOKMARK' else None) for e in events]


def recorded_versions(version: str) -> dict[int, str]:
    exchange = recording(f'{version}/watch-bookmarks-cluster')
    known = {int(exchange['list_before']): 'LIST', int(exchange['change']['resourceVersion']): 'change'}
    known.update({found: f'caught up before look {look}'
                  for look, found in recorded_catch_ups(version).items()})
    return known


@dataclasses.dataclass
class Replayed:
    version: str
    before_change: dict[str, list[Obj]]  # per watch, what had arrived when the change was sent
    events: dict[str, list[Obj]]
    ended: dict[str, bool]  # by the server
    known: dict[int, str]  # the session's versions: the LIST's, the change's, the caught-up ones
    change_rv: int
    list_after: int


def scaled_path(exchange: Obj, since: str) -> str:
    """The recorded request, from the emulator's LIST, with the deadline on the emulator's clock."""
    path: str = exchange['request']['path'].replace(f'resourceVersion={exchange["list_before"]}',
                                                     f'resourceVersion={since}')
    timeout = next((p for p in path.split('&') if p.startswith('timeoutSeconds=')), None)
    if timeout is not None:
        # Recorded: looks at 60 and 120 s, the last at 150 - 2 = 148 s, before the third (180 s).
        pre_timeout = float(timeout.split('=')[1]) - PRE_TIMEOUT
        assert 2 * RECORDED_PERIOD < pre_timeout < 3 * RECORDED_PERIOD
        path = path.replace(timeout, f'timeoutSeconds={PRE_TIMEOUT_AT * PERIOD + PRE_TIMEOUT}')
    return path


class Clock:
    """
    The emulator's clock, moved by the replay alone: the cacher's looks and the deadline come
    where the script puts them, between its steps, however late a thread of this machine runs.

    Installed as the server loop's ``time`` (ServerThread takes no clock of its own); each move
    returns once the loop has nothing left to do at the new time, so what was due is sent.
    """

    def __init__(self, server: ServerThread) -> None:
        self._server = server
        self._loop = server._loop
        self._began = self._now = self._loop.time()
        self._released: float | None = None
        self._loop.time = self.time  # type: ignore[method-assign]

    def time(self) -> float:
        if self._released is None:
            return self._now
        return self._now + time.monotonic() - self._released

    def to(self, periods: float) -> None:
        # Past the point by far more than a float's error: the deadline the watch computed from its
        # start is then behind the clock, not a hair ahead of it.
        self._now = self._began + periods * PERIOD + PAST
        deadline = time.monotonic() + SETTLE  # a bound that turns a hang into a failure
        while not self._server.call(self._idle):  # each call also wakes the loop
            assert time.monotonic() < deadline, f'the emulator never settled at {periods} periods'

    def release(self) -> None:
        """Time runs again (the server's shutdown waits on it)."""
        self._released = time.monotonic()

    def _idle(self) -> bool:
        """On the loop: nothing ready to run, no timer due (asyncio's own queues, read as they are)."""
        loop = self._loop
        return not loop._ready and all(timer.cancelled() or timer.when() > self._now  # type: ignore[attr-defined]
                                       for timer in loop._scheduled)  # type: ignore[attr-defined]


def _catch_up(api: ApiServer) -> int:
    """On the server's loop: the watch cache catches up with the cluster; the version it reached."""
    api.store.refresh_watch_cache()
    return api.store.resource_version


def _status_200(watch: Watch, _: list[Obj]) -> bool:
    return watch.status == 200


def _answered(watches: dict[str, Watch]) -> None:
    for name, watch in watches.items():
        watch.wait(functools.partial(_status_200, watch), what=f'{name}: the answer')


def _at_least(count: int, events: list[Obj]) -> bool:
    return len(events) >= count


def _received(watches: dict[str, Watch], recorded: dict[str, list[Obj]], what: str) -> None:
    """Each watch has read as many events as the recording had by then (sent, they may be on their way)."""
    for name, watch in watches.items():
        watch.wait(functools.partial(_at_least, len(recorded[name])), what=f'{name}: {what}')


def replay(version: str) -> Replayed:
    exchanges = {name: recording(f'{version}/{name}') for name in WATCHES}
    change = exchanges['watch-bookmarks-cluster']['change']
    assert 1 < change['at'] / RECORDED_PERIOD < 2, 'recorded between the first look and the second'
    catch_ups = recorded_catch_ups(version)
    # The watch caches catch up only when the test says so, where the recording shows it.
    api = ApiServer(bookmark_interval=PERIOD, version=VERSIONS[version], cache_refresh_interval=0)
    with ServerThread(api, garbage_collector=False) as server:
        client = Client(server.url)
        clock = Clock(server)

        def other_write(name: str) -> None:
            assert client.request('POST', '/api/v1/namespaces', factory.namespace(name)).status == 201

        def before_look(look: int) -> None:
            clock.to(BEFORE_LOOK[look])
            other_write(f'other-{look}')  # the cluster's version moves on, as recorded
            if look in catch_ups:
                known[server.call(_catch_up, api)] = f'caught up before look {look}'

        for namespace in ('bm', 'bm-other'):
            other_write(namespace)
        assert client.request('POST', BASE, factory.deployment('quiet')).status == 201
        since = client.request('GET', '/apis/apps/v1/deployments').body['metadata']['resourceVersion']
        known = {int(since): 'LIST'}
        watches = {name: Watch(server.url, scaled_path(exchange, since))
                   for name, exchange in exchanges.items()}
        try:
            _answered(watches)  # each watch began: its looks are due from the clock's start
            clock.to(0)
            before_look(1)
            clock.to(1)  # the first look
            clock.to(CHANGE_AT)
            _received(watches, {name: recorded_before_change(e) for name, e in exchanges.items()},
                      'what came before the change')
            before_change = {name: watch.events for name, watch in watches.items()}
            answer = client.request('PATCH', f'{BASE}/quiet', change['request']['body'],
                                    content_type=MERGE_PATCH)
            assert answer.status == change['status'] == 200, answer.raw
            known[int(answer.body['metadata']['resourceVersion'])] = 'change'
            before_look(2)
            clock.to(2)  # the second look
            before_look(PRE_TIMEOUT_LOOK)
            clock.to(END_AT)  # the namespaced watch's look before its deadline (PRE_TIMEOUT_AT) on the way
            other_write('other-end')
            listed = client.request('GET', '/apis/apps/v1/deployments').body
            _received(watches, {name: events_of(e) for name, e in exchanges.items()}, 'every event')
            ended = {name: watch.ended for name, watch in watches.items()}
            for name, watch in watches.items():
                if name != 'watch-bookmarks-namespace':
                    watch.close()  # the client goes away, as the recorder did
            clock.to(PRE_TIMEOUT_AT + PRE_TIMEOUT / PERIOD)  # the namespaced watch's deadline
            watches['watch-bookmarks-namespace'].wait_for_end(timeout=SETTLE)
            ended['watch-bookmarks-namespace'] = True
        finally:
            clock.release()
            for watch in watches.values():
                if not watch.ended:
                    watch.close()
    return Replayed(version, before_change, {name: watch.events for name, watch in watches.items()},
                    ended, known,
                    int(answer.body['metadata']['resourceVersion']),
                    int(listed['metadata']['resourceVersion']))


# The change comes half-way between the first and the second look, as recorded.
assert 1 < CHANGE_AT < BEFORE_LOOK[2] < 2 < BEFORE_LOOK[PRE_TIMEOUT_LOOK] < PRE_TIMEOUT_AT < END_AT < 3


@pytest.fixture(scope='module', params=list(VERSIONS))
def replayed(request: pytest.FixtureRequest) -> Iterator[Replayed]:
    yield replay(request.param)


@pytest.mark.parametrize('name', WATCHES)
def test_bookmarks_come_as_recorded(replayed: Replayed, name: str) -> None:
    exchange = recording(f'{replayed.version}/{name}')
    recorded = events_of(exchange)
    mine = replayed.events[name]

    assert [e['type'] for e in mine] == [e['type'] for e in recorded]
    assert replayed.ended[name] == (exchange['ended_by_server_at'] is not None)


@pytest.mark.parametrize('name', WATCHES)
def test_what_comes_before_the_change(replayed: Replayed, name: str) -> None:
    """While the Deployments are quiet, a BOOKMARK carries the LIST's version (the end of the
    initial ADDEDs) or one the watch cache caught up with: never on v1.24 and v1.28."""
    exchange = recording(f'{replayed.version}/{name}')
    recorded_before = recorded_before_change(exchange)
    assert exchange['change']['at'] > RECORDED_PERIOD  # and the first look had come and gone
    known = recorded_versions(replayed.version)
    assert {label for _, label in labels(recorded_before, known) if label is not None} <= {
        'LIST', 'caught up before look 1'}
    if not VERSIONS[replayed.version].cacher_follows_the_cluster:
        assert 'BOOKMARK' not in [e['type'] for e in recorded_before]

    assert labels(replayed.before_change[name], replayed.known) == labels(recorded_before, known)


@pytest.mark.parametrize('name', WATCHES)
def test_a_bookmark_carries_the_version_the_watch_cache_processed(replayed: Replayed, name: str) -> None:
    exchange = recording(f'{replayed.version}/{name}')
    recorded = events_of(exchange)
    # Recorded: the LIST's, the change's or one the cache caught up with, never the cluster's at the
    # look: it had moved on (leases, events), and on v1.24 and v1.28 the cache never caught up.
    known = recorded_versions(replayed.version)
    assert all(rv(e) in known for e in recorded if e['type'] == 'BOOKMARK')
    assert int(exchange['list_after']) > max(known)
    assert replayed.list_after > max(replayed.known)

    assert labels(replayed.events[name], replayed.known) == labels(recorded, known)
    bookmarks = [e for e in replayed.events[name] if e['type'] == 'BOOKMARK']
    for bookmark, theirs in zip(bookmarks, [e for e in recorded if e['type'] == 'BOOKMARK'], strict=True):
        expected = copy.deepcopy(theirs)
        expected['object']['metadata']['resourceVersion'] = bookmark['object']['metadata']['resourceVersion']
        assert bookmark == expected


def test_the_bookmark_times_recorded() -> None:
    """The timings the emulator's schedule is scaled from, on every version."""
    for version in VERSIONS:
        for name in WATCHES:
            exchange = recording(f'{version}/{name}')
            events = events_of(exchange)
            times = [at for e, at in zip(events, exchange['line_times'], strict=True)
                     if e['type'] == 'BOOKMARK' and not initial_events_end(e)]
            # At the cacher's looks, a minute apart from the watch's start (not from the change),
            # and 2 s before a deadline (recorded_look checks it) ...
            looks = [recorded_look(at, exchange) for at in times]
            assert looks == sorted(set(looks)), (version, name, times)
            # ... but for the end of the initial ADDEDs, right after them (v1.34+, no resourceVersion).
            ends = [index for index, event in enumerate(events) if initial_events_end(event)]
            assert len(ends) == (VERSIONS[version].initial_events_end_bookmark
                                 and name == 'watch-bookmarks-no-version'), (version, name)
            for end in ends:
                assert {e['type'] for e in events[:end]} == {'ADDED'}
                assert exchange['line_times'][end] < 1


@pytest.mark.parametrize('version', list(VERSIONS))
def test_the_watch_cache_catches_up_where_it_follows_the_cluster(version: str) -> None:
    """From v1.34 a watch of quiet Deployments gets a BOOKMARK with the cluster's version once the
    cache caught up by itself (``cache_refresh_interval``), as v1.34's and v1.37's recordings show;
    v1.24's and v1.28's never caught up."""
    follows = VERSIONS[version].cacher_follows_the_cluster
    assert bool(recorded_catch_ups(version)) == follows
    api = ApiServer(bookmark_interval=0.4, version=VERSIONS[version], cache_refresh_interval=0.2)
    with ServerThread(api, garbage_collector=False) as server:
        client = Client(server.url)
        clock = Clock(server)
        since = client.request('GET', '/apis/apps/v1/deployments').body['metadata']['resourceVersion']
        watch = Watch(server.url, f'/apis/apps/v1/deployments?watch=true&allowWatchBookmarks=true'
                                  f'&resourceVersion={since}')
        try:
            _answered({'the watch': watch})
            assert client.request('POST', '/api/v1/namespaces', factory.namespace('busy')).status == 201
            now = client.request('GET', '/api/v1/namespaces').body['metadata']['resourceVersion']
            for periods in (0.2, 0.4, 0.6, 0.8):  # the cache's refreshes, and two looks
                clock.to(periods)
            # A Deployment created after the looks: what they sent is before it in the stream.
            marker = '/apis/apps/v1/namespaces/busy/deployments'
            assert client.request('POST', marker, factory.deployment('marker')).status == 201
            watch.wait(lambda events: any(e['type'] == 'ADDED' for e in events), what='the marker')
        finally:
            clock.release()
            watch.close()
    looked = list(itertools.takewhile(lambda e: e['type'] != 'ADDED', watch.events))
    assert [(e['type'], rv(e)) for e in looked] == ([('BOOKMARK', int(now))] * 2 if follows else [])
