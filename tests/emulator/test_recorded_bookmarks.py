"""
The emulator sends BOOKMARKs when, and with what, real kube-apiservers v1.24 and v1.28 did.

``recordings/v1.*/watch-bookmarks-*.json`` (``record_bookmarks.py``): four watches
started together from one LIST's resourceVersion, Deployments quiet for 70 s,
one label change, 90 s more. On both versions no watch got a BOOKMARK before
the change (the cacher's look at 60 s found nothing newer than the watch);
every one got one at its next look (120 s), carrying the resourceVersion of
the change, not the cluster's newer one; the watch of a namespace where
nothing changed got it too; the one with ``timeoutSeconds=150`` got another 2 s
before its deadline (148 s) and then its end; the one without a resourceVersion
got one on v1.24 and none on v1.28 (served from etcd).

The same session against the emulator, its clock scaled: the cacher's minute is
``bookmark_interval`` (1 s), the change half-way between the first look and the
second, the watches closed half-way between the second and the third, and the
namespaced watch's deadline 2 s after a point half-way between them too. What
is compared: each watch's events (their types in order, each BOOKMARK the
recorded object but for its resourceVersion, which is the change's), what had
arrived before the change (nothing but the synthetic ADDED), and which watch the
server ended.
"""
import copy
import dataclasses
import json
import time
from collections.abc import Iterator

import pytest

from deploywatch.testing import ApiServer, ServerThread, factory, versions
from tests.emulator.replay import MERGE_PATCH, Client, Obj, Watch, recording

VERSIONS = {'v1.24': versions.V1_24, 'v1.28': versions.V1_28}
WATCHES = ['watch-bookmarks-cluster', 'watch-bookmarks-namespace', 'watch-bookmarks-other-namespace',
           'watch-bookmarks-no-version']
BASE = '/apis/apps/v1/namespaces/bm/deployments'
PERIOD = 1.0  # the emulator's bookmark_interval: the cacher's minute (bookmarkFrequency)
RECORDED_PERIOD = 60.0
PRE_TIMEOUT = 2.0  # not scaled: the cacher's fixed "deadline - 2 s"


def events_of(exchange: Obj) -> list[Obj]:
    return [json.loads(line) for line in exchange['response']['stream_lines']]


def rv(event: Obj) -> int:
    return int(event['object']['metadata']['resourceVersion'])


@dataclasses.dataclass
class Replayed:
    version: str
    before_change: dict[str, list[Obj]]  # per watch, what had arrived when the change was sent
    events: dict[str, list[Obj]]
    ended: dict[str, bool]  # by the server
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
        path = path.replace(timeout, f'timeoutSeconds={2.5 * PERIOD + PRE_TIMEOUT}')
    return path


def replay(version: str) -> Replayed:
    exchanges = {name: recording(f'{version}/{name}') for name in WATCHES}
    change = exchanges['watch-bookmarks-cluster']['change']
    recorded_at = change['at'] / RECORDED_PERIOD
    assert 1 < recorded_at < 2, 'recorded between the first look and the second'
    api = ApiServer(bookmark_interval=PERIOD, version=VERSIONS[version])
    with ServerThread(api, garbage_collector=False) as server:
        client = Client(server.url)
        for namespace in ('bm', 'bm-other'):
            assert client.request('POST', '/api/v1/namespaces', factory.namespace(namespace)).status == 201
        assert client.request('POST', BASE, factory.deployment('quiet')).status == 201
        since = client.request('GET', '/apis/apps/v1/deployments').body['metadata']['resourceVersion']
        watches = {name: Watch(server.url, scaled_path(exchange, since))
                   for name, exchange in exchanges.items()}
        started = time.monotonic()
        try:
            time.sleep(max(0.0, started + 1.5 * PERIOD - time.monotonic()))
            before_change = {name: watch.events for name, watch in watches.items()}
            answer = client.request('PATCH', f'{BASE}/quiet', change['request']['body'],
                                    content_type=MERGE_PATCH)
            assert answer.status == change['status'] == 200, answer.raw
            # The cluster's other writes move its resourceVersion past the change's, as recorded.
            assert client.request('POST', '/api/v1/namespaces', factory.namespace('later')).status == 201
            time.sleep(max(0.0, started + 2.5 * PERIOD - time.monotonic()))
            listed = client.request('GET', '/apis/apps/v1/deployments').body
            ended = {name: watch.ended for name, watch in watches.items()}
            for name, watch in watches.items():
                if name != 'watch-bookmarks-namespace':
                    watch.close()  # the client goes away, as the recorder did
            watches['watch-bookmarks-namespace'].wait_for_end(timeout=PRE_TIMEOUT + PERIOD)
            ended['watch-bookmarks-namespace'] = True
        finally:
            for watch in watches.values():
                if not watch.ended:
                    watch.close()
    return Replayed(version, before_change, {name: watch.events for name, watch in watches.items()},
                    ended,
                    int(answer.body['metadata']['resourceVersion']),
                    int(listed['metadata']['resourceVersion']))


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
def test_no_bookmark_before_a_change(replayed: Replayed, name: str) -> None:
    """A watch of quiet Deployments gets nothing at the cacher's look: no change after its version."""
    exchange = recording(f'{replayed.version}/{name}')
    # "at" is when the write had been answered; its MODIFIED may arrive a few ms before that.
    recorded_before = [e['type'] for e, at in zip(events_of(exchange), exchange['line_times'], strict=True)
                       if at < exchange['change']['at'] - 1.0]
    assert 'BOOKMARK' not in recorded_before
    assert exchange['change']['at'] > RECORDED_PERIOD  # and the first look had come and gone

    assert [e['type'] for e in replayed.before_change[name]] == recorded_before


@pytest.mark.parametrize('name', WATCHES)
def test_a_bookmark_carries_the_version_of_the_last_change(replayed: Replayed, name: str) -> None:
    exchange = recording(f'{replayed.version}/{name}')
    recorded = events_of(exchange)
    recorded_bookmarks = [e for e in recorded if e['type'] == 'BOOKMARK']
    change_rv = int(exchange['change']['resourceVersion'])
    # Recorded: the change's version, although the cluster's had moved on (leases, events).
    assert all(rv(e) == change_rv for e in recorded_bookmarks)
    assert int(exchange['list_after']) > change_rv
    assert replayed.list_after > replayed.change_rv

    bookmarks = [e for e in replayed.events[name] if e['type'] == 'BOOKMARK']
    assert len(bookmarks) == len(recorded_bookmarks)
    for bookmark, theirs in zip(bookmarks, recorded_bookmarks, strict=True):
        expected = copy.deepcopy(theirs)
        expected['object']['metadata']['resourceVersion'] = str(replayed.change_rv)
        assert bookmark == expected


def test_the_bookmark_times_recorded() -> None:
    """The timings the emulator's schedule is scaled from, on both versions."""
    for version in VERSIONS:
        for name in WATCHES:
            exchange = recording(f'{version}/{name}')
            times = [at / RECORDED_PERIOD for e, at in zip(events_of(exchange), exchange['line_times'],
                                                            strict=True) if e['type'] == 'BOOKMARK']
            # At the cacher's second look (a minute after the first, not after the change) ...
            assert all(1.95 < at < 2.1 for at in times[:1]), (version, name, times)
            # ... and, with a deadline, 2 s before it.
            if exchange['ended_by_server_at'] is not None:
                assert abs(times[-1] * RECORDED_PERIOD - (exchange['ended_by_server_at'] - PRE_TIMEOUT)) < 1
