"""
Streaming lists (KEP-3157): deploywatch lists with one watch request where the server offers it,
and with paginated LISTs, for the rest of the process, where it refuses (``loop.ListingMode``).

On the emulator, as v1.37 and v1.34 serve streaming lists and as a server with the ``WatchList``
gate off (``ApiServer(watch_list=False)``, ``v1.37/watchlist-gate-off.json``) and v1.28 refuse
them (422). What is checked beyond the events: the requests the server saw (its request log),
and on v1.37 that the streaming list came gzipped, one member per flush, and every member was read.
"""
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from deploywatch.testing import ApiServer, ServerThread, versions
from deploywatch.testing.access import Request
from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.driver import Driver
from tests.harness.operator import Event, OperatorProcess, eventually, of
from tests.harness.truth import wait_until_consistent
from tests.robustness.conftest import Start
from tests.robustness.test_compression import serves_streaming_lists
from tests.robustness.test_disconnects import outage

QUIET = {'DEPLOYWATCH_RESYNC_SECONDS': '0'}
REFUSED = 'The API server refuses streaming lists'
GATE_OFF = pytest.param({'watch_list': False}, id='gate-off')
V1_28 = pytest.param({'version': versions.V1_28}, id='v1.28')
V1_34 = pytest.param({'version': versions.V1_34}, id='v1.34')
V1_37 = pytest.param({'version': versions.V1_37}, id='v1.37')
STREAMING = {'watch': 'true', 'sendInitialEvents': 'true', 'allowWatchBookmarks': 'true',
             'resourceVersionMatch': 'NotOlderThan', 'resourceVersion': ''}


def _query(request: Request) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(request.query, keep_blank_values=True))


def _deployments(server: ServerThread, namespace: str) -> list[Request]:
    return [r for r in server.server.log.by('deploywatch')
            if r.resource == 'deployments' and r.namespace == namespace]


def _streaming(requests: list[Request]) -> list[Request]:
    return [r for r in requests if r.verb == 'watch' and 'sendInitialEvents' in _query(r)]


def _lists(requests: list[Request]) -> list[Request]:
    return [r for r in requests if r.verb == 'list']


def _of(events: list[Event], namespace: str) -> list[tuple[str, str, bool, bool]]:
    return [(e['type'], e['name'], bool(e.get('initial')), bool(e.get('inferred'))) for e in events
            if e['namespace'] == namespace and e['type'] != 'RESYNC']


def _changed_while_down(driver: Driver, operator: OperatorProcess, namespace: str) -> None:
    """a scaled, c deleted, b recreated, d created, all while the stream is down; then a 410."""
    with outage(driver, operator):
        driver.scale(namespace, 'a', 5)
        driver.delete(namespace, 'c')
        driver.delete(namespace, 'b')
        driver.create(namespace, 'b')
        driver.create(namespace, 'd')
        driver.compact()  # the watch cannot resume: 410 Gone, then a relist


@pytest.mark.parametrize('apiserver', [V1_37, V1_34], indirect=True)
def test_it_starts_and_relists_after_a_410_with_one_streaming_list_each(
        apiserver: ServerThread, driver: Driver, start: Start) -> None:
    namespace = driver.namespace('wl')
    for name in ('a', 'b', 'c', 'e'):
        driver.create(namespace, name)
    old_b = driver.truth_uid(namespace, 'b')
    operator = start(f'--namespace={namespace}', env=QUIET)
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', 4, what='four initial ADDED')
    assert sorted(_of(operator.events, namespace)) == [('ADDED', name, True, False) for name in 'abce']
    driver.scale(namespace, 'e', 2)
    operator.wait_for(of('e', 'MODIFIED'), what='the watch that follows the listing')
    before = len(operator.events)

    _changed_while_down(driver, operator, namespace)
    assert wait_until_consistent(operator, driver.truth) == []
    after = [(kind, name, initial, inferred) for kind, name, initial, inferred
             in _of(operator.events[before:], namespace)]
    assert after.index(('DELETED', 'b', False, True)) < after.index(('ADDED', 'b', True, False)), after
    assert sorted(after) == sorted([('MODIFIED', 'a', False, True), ('DELETED', 'b', False, True),
                                    ('ADDED', 'b', True, False), ('DELETED', 'c', False, True),
                                    ('ADDED', 'd', True, False)]), after  # e: unchanged, silent
    assert [e['uid'] for e in operator.events[before:] if of('b', 'DELETED')(e)] == [old_b]

    requests = _deployments(apiserver, namespace)
    assert _lists(requests) == []
    streaming = _streaming(requests)
    assert len(streaming) == 2, streaming  # the start and the relist after the 410
    assert all(_query(r) == STREAMING for r in streaming), streaming
    assert REFUSED not in operator.stderr
    assert operator.stop() == 0


@pytest.mark.parametrize('apiserver', [V1_37], indirect=True)
def test_a_restart_with_a_state_file_streams_its_listing(
        apiserver: ServerThread, driver: Driver, start: Start, tmp_path: Any) -> None:
    namespace = driver.namespace('wls')
    for name in ('a', 'b', 'c'):
        driver.create(namespace, name)
    env = {**QUIET, 'DEPLOYWATCH_STATE_FILE': str(tmp_path / 'state.json')}
    first = start(f'--namespace={namespace}', env=env)
    first.wait_for_count(lambda e: e['type'] == 'ADDED', 3, what='three initial ADDED')
    eventually((tmp_path / 'state.json').exists, what='the state file')
    assert first.stop() == 0

    driver.scale(namespace, 'a', 3)
    driver.delete(namespace, 'b')
    driver.create(namespace, 'd')
    second = start(f'--namespace={namespace}', env=env)
    second.wait_for(of('d', 'ADDED'), what='d')
    assert wait_until_consistent(second, driver.truth, before=first.events) == []
    assert sorted(_of(second.events, namespace)) == [  # c: unchanged, silent
        ('ADDED', 'd', True, False), ('DELETED', 'b', False, True), ('MODIFIED', 'a', False, True)]
    requests = _deployments(apiserver, namespace)
    assert _lists(requests) == [] and len(_streaming(requests)) == 2, requests


@pytest.mark.parametrize('apiserver', [GATE_OFF, V1_28], indirect=True)
def test_a_server_that_refuses_streaming_lists_is_listed_with_pages_for_the_rest_of_the_process(
        apiserver: ServerThread, driver: Driver, start: Start) -> None:
    one, two = driver.namespace('fa'), driver.namespace('fb')
    for namespace in (one, two):
        for name in ('a', 'b', 'c'):
            driver.create(namespace, name)
    operator = start(f'--namespace={one}', f'--namespace={two}', env=QUIET)
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', 6, what='six initial ADDED')
    assert all(e['initial'] for e in operator.events if e['type'] == 'ADDED')
    before = len(operator.events)

    _changed_while_down(driver, operator, one)
    assert wait_until_consistent(operator, driver.truth) == []
    after = _of(operator.events[before:], one)
    assert after.index(('DELETED', 'b', False, True)) < after.index(('ADDED', 'b', True, False)), after

    assert operator.stderr.count(REFUSED) == 1, operator.stderr  # one line, however many watches
    line = next(line for line in operator.stderr.splitlines() if REFUSED in line)
    assert 'WARNING' in line and '422' in line, line
    for namespace in (one, two):
        requests = _deployments(apiserver, namespace)
        refused = _streaming(requests)
        assert len(refused) <= 1 and all(r.status == 422 for r in refused), refused  # never asked again
        assert len(_lists(requests)) >= (2 if namespace == one else 1), requests
    assert _streaming(_deployments(apiserver, one)) or _streaming(_deployments(apiserver, two))
    assert operator.stop() == 0


@pytest.fixture
def encodings(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, str], str, str | None]]:
    """Each answer of the emulator: the query, the request's Accept-Encoding, the Content-Encoding."""
    seen: list[tuple[dict[str, str], str, str | None]] = []
    app = ApiServer.app

    def recording(self: ApiServer) -> web.Application:
        application = app(self)

        async def record(request: web.Request, response: web.StreamResponse) -> None:
            seen.append((dict(request.query), request.headers.get('Accept-Encoding', ''),
                         response.headers.get('Content-Encoding')))

        application.on_response_prepare.append(record)
        return application

    monkeypatch.setattr(ApiServer, 'app', recording)
    return seen


@pytest.fixture
def recorded(encodings: list[Any], request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    """The emulated v1.37 server, its answers recorded (``encodings`` patched before it starts)."""
    yield request.getfixturevalue('apiserver')


@pytest.mark.parametrize('apiserver', [V1_37], indirect=True)
def test_a_gzipped_streaming_list_is_read_member_by_member(
        recorded: ServerThread, encodings: list[tuple[dict[str, str], str, str | None]],
        driver: Driver, start: Start) -> None:
    namespace = driver.namespace('gz')
    names = [f'web-{n:03}' for n in range(120)]  # the emulator's members: 50 initial events each
    for name in names:
        driver.create(namespace, name)
    operator = start(f'--namespace={namespace}', env=QUIET)
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', len(names), what='every initial ADDED')
    driver.scale(namespace, 'web-007', 3)  # a member of its own, on the same response
    operator.wait_for(of('web-007', 'MODIFIED'), what='the change after the listing')
    assert wait_until_consistent(operator, driver.truth) == []
    assert sorted(e['name'] for e in operator.events if e['type'] == 'ADDED') == names

    streamed = [(accepted, encoding) for query, accepted, encoding in encodings
                if query.get('sendInitialEvents') == 'true']
    assert len(streamed) == 1, encodings
    accepted, encoding = streamed[0]
    assert 'gzip' in [token.strip() for token in accepted.split(',')], accepted  # what Kopf's session asks
    assert encoding == 'gzip'
    assert _streaming(_deployments(recorded, namespace)) and not _lists(_deployments(recorded, namespace))
    assert operator.stop() == 0


@pytest.mark.parametrize('apiserver', [V1_37], indirect=True)
def test_a_pause_during_the_initial_events_lists_again_and_prints_each_deployment_once(
        apiserver: ServerThread, driver: Driver, start: Start) -> None:
    """
    A streaming list is a watch request, and stdout falling behind pauses it as any watch: the
    response is closed, the listing is incomplete, and once the reader has caught up the
    Deployments are listed again; the ones printed already are unchanged, so not printed twice.
    """
    namespace = driver.namespace('wlp')
    names = [f'big-{n:03}' for n in range(400)]
    for name in names:  # ~13 KB a line: 5 MB of initial ADDEDs, past the 4 MiB that pauses the watches
        driver.create(namespace, name)
        driver.patch(namespace, name, {'metadata': {'annotations': {'note': 'x' * 12_000}}})
    operator = start(f'--namespace={namespace}', env=QUIET)
    operator.pause_reading()  # before its first line: the listing outgrows what stdout holds
    eventually(lambda: 'stdout is not keeping up' in operator.stderr, what='the watches paused', timeout=60)
    operator.resume_reading()
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', len(names), what='every initial ADDED')
    assert wait_until_consistent(operator, driver.truth) == []
    added = sorted(e['name'] for e in operator.events if e['type'] == 'ADDED')
    assert added == names  # each once, all initial
    assert all(e['initial'] for e in operator.events if e['type'] == 'ADDED')
    requests = _deployments(apiserver, namespace)
    assert _lists(requests) == [] and len(_streaming(requests)) >= 2, requests  # the pause cut the first
    assert operator.stop() == 0


def test_the_listing_follows_what_the_server_offers_on_every_cluster(
        cluster: Cluster, start_operator: StartOperator) -> None:
    """
    A real server too: v1.34+ with the WatchList gate on serves streaming lists and hears no
    refusal; one started with ``--feature-gates=WatchList=false`` refuses (422), and deploywatch
    says so in one line and lists with pages. Either way the stream starts whole and goes on.
    """
    namespace = cluster.new_namespace('wlr')
    for name in ('a', 'b'):
        cluster.create(deployment(name, namespace=namespace, replicas=0))
    operator = start_operator(f'--namespace={namespace}', env=QUIET)
    operator.wait_for_count(lambda e: e['type'] == 'ADDED' and e['initial'], 2, what='two initial ADDED')
    cluster.create(deployment('c', namespace=namespace, replicas=0))
    assert operator.wait_for(of('c', 'ADDED'), what='c, from the watch')['initial'] is False
    refusals = [line for line in operator.stderr.splitlines() if REFUSED in line]
    if cluster.emulated or serves_streaming_lists(cluster.kubeconfig):  # the emulator: as v1.37
        assert refusals == [], refusals
    else:
        assert len(refusals) == 1 and '422' in refusals[0] and 'WatchList' in refusals[0], refusals
    assert operator.stop() == 0
