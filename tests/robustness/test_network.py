"""
The faults a real cluster can play: the network between the operator and the API server.

Every scenario runs against the emulated API server and, with DEPLOYWATCH_E2E_KUBECONFIG,
a real kube-apiserver (``cluster`` is parametrised). The operator connects through
:class:`~tests.harness.proxy.Proxy`, which cuts, refuses or holds its connections; the
test's own client goes direct, so Deployments change while the operator's side is broken.
Nothing here reaches into the server: it is the same server as any other client sees.

A real cluster's deployment controller (and the stand-in kubelet) writes status after
every change, at moments of its own. So no scenario expects "the next MODIFIED": each
compares the whole stream with what the server holds (tests/harness/truth.py) once
things have settled, and counts only what the scenario itself decides (ADDED, DELETED,
``initial``, ``inferred``).

The first tests prove the proxy itself, on plain sockets: a fault test is only as good
as the fault it plays.
"""
import contextlib
import functools
import os
import pathlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from deploywatch.kube import loop as watching
from deploywatch.model.tracker import decode
from deploywatch.runtime import state
from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness import identity
from tests.harness.clusters import Cluster, EmulatedCluster
from tests.harness.operator import Event, OperatorProcess, eventually, of
from tests.harness.proxy import Proxy
from tests.harness.realk8s import ControlPlane
from tests.harness.truth import wait_until_consistent
from tests.robustness.conftest import is_listing

Obj = dict[str, Any]


# --- The proxy, on plain sockets ------------------------------------------------------


class Echo:
    """A TCP server on 127.0.0.1 that echoes, and records how each connection ended."""

    def __init__(self) -> None:
        self._listener = socket.create_server(('127.0.0.1', 0))
        self.port = self._listener.getsockname()[1]
        self.endings: list[str] = []  # 'eof' or 'reset', per connection
        self._lock = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self._listener.accept()
                threading.Thread(target=self._echo, args=(connection,), daemon=True).start()

    def _echo(self, connection: socket.socket) -> None:
        ending = 'eof'
        with connection:
            try:
                while data := connection.recv(65536):
                    connection.sendall(data)
            except ConnectionResetError:
                ending = 'reset'
        with self._lock:
            self.endings.append(ending)
            self._lock.notify_all()

    def wait_for_endings(self, count: int) -> list[str]:
        with self._lock:
            assert self._lock.wait_for(lambda: len(self.endings) >= count, timeout=5), self.endings
            return list(self.endings)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the blocked accept(): close() alone would not
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.close()


@pytest.fixture
def echo_proxy(echo: Echo) -> Iterator[Proxy]:
    with Proxy(f'http://127.0.0.1:{echo.port}') as proxy:
        yield proxy


def _connect(proxy: Proxy) -> socket.socket:
    client = socket.create_connection(('127.0.0.1', proxy.port), timeout=5)
    client.sendall(b'ping')
    assert client.recv(4) == b'ping'  # connected through to the target
    return client


def _ending(client: socket.socket) -> str:
    try:
        return 'eof' if client.recv(1) == b'' else 'data'
    except ConnectionResetError:
        return 'reset'


def test_the_proxy_forwards_both_ways_and_passes_a_half_close_on(echo: Echo, echo_proxy: Proxy) -> None:
    client = _connect(echo_proxy)
    payload = os.urandom(1024 * 1024)
    sender = threading.Thread(target=client.sendall, args=(payload,))
    sender.start()
    received = bytearray()
    while len(received) < len(payload):
        received += client.recv(65536)
    sender.join()
    assert bytes(received) == payload
    assert echo_proxy.url == f'http://127.0.0.1:{echo_proxy.port}'
    assert echo_proxy.connections == 1 and echo_proxy.open_connections == 1

    client.shutdown(socket.SHUT_WR)  # the target sees the FIN, closes, and the client sees that
    assert echo.wait_for_endings(1) == ['eof']
    assert _ending(client) == 'eof'
    eventually(lambda: echo_proxy.open_connections == 0, what='the closed connection forgotten', timeout=5)


@pytest.mark.parametrize('reset', [True, False], ids=['reset', 'close'])
def test_a_cut_ends_every_connection_at_both_ends(echo: Echo, echo_proxy: Proxy, reset: bool) -> None:
    clients = [_connect(echo_proxy) for _ in range(3)]

    assert echo_proxy.cut(reset=reset) == 3

    expected = 'reset' if reset else 'eof'
    assert [_ending(client) for client in clients] == [expected] * 3
    assert echo.wait_for_endings(3) == [expected] * 3
    assert echo_proxy.open_connections == 0
    _connect(echo_proxy)  # and new connections work at once
    assert echo_proxy.connections == 4


def test_a_reset_from_one_end_reaches_the_other_as_a_reset(echo: Echo, echo_proxy: Proxy) -> None:
    client = _connect(echo_proxy)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
    client.close()
    assert echo.wait_for_endings(1) == ['reset']


def test_refused_connections_until_accepted_again_on_the_same_port(echo: Echo, echo_proxy: Proxy) -> None:
    open_client, port = _connect(echo_proxy), echo_proxy.port

    echo_proxy.refuse()

    assert _ending(open_client) == 'reset'
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', port), timeout=5)
    echo_proxy.accept()
    assert echo_proxy.port == port
    _connect(echo_proxy)


def test_held_bytes_are_delivered_on_release_and_nothing_is_closed(echo: Echo, echo_proxy: Proxy) -> None:
    client = _connect(echo_proxy)

    echo_proxy.hold()
    client.sendall(b'held')
    client.settimeout(0.5)
    with pytest.raises(TimeoutError):
        client.recv(4)
    echo_proxy.release()
    client.settimeout(5)
    assert client.recv(4) == b'held'
    assert echo.endings == []


def test_an_unreachable_target_resets_the_client(echo: Echo, echo_proxy: Proxy) -> None:
    echo.close()  # the target's port now refuses
    try:
        client = socket.create_connection(('127.0.0.1', echo_proxy.port), timeout=5)
    except ConnectionResetError:  # on loopback the reset may come before connect() returns
        return
    assert _ending(client) == 'reset'


def test_a_closed_proxy_refuses_and_its_thread_ends(echo: Echo) -> None:
    proxy = Proxy(f'http://127.0.0.1:{echo.port}')
    client = _connect(proxy)

    proxy.close()

    assert _ending(client) == 'reset'
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', proxy.port), timeout=5)
    proxy.close()  # twice is harmless


# --- The operator through the proxy, against the emulator and a real server -------------

RESYNC_OFF = {'DEPLOYWATCH_RESYNC_SECONDS': '0'}
SETTLE = 60.0  # seconds for a real controller to finish the rollouts a scenario started
CONSISTENT = 90.0  # seconds for the stream to catch up with the server after a fault


@pytest.fixture
def proxy(cluster: Cluster) -> Iterator[Proxy]:
    """Between the operator and the API server (the test's own client goes direct)."""
    with Proxy(identity.server_of(cluster.kubeconfig)) as proxy:
        yield proxy


@pytest.fixture
def proxied(cluster: Cluster, proxy: Proxy, tmp_path: pathlib.Path) -> pathlib.Path:
    """The operator's ServiceAccount (the manifests' RBAC), reaching the server through the proxy."""
    return cluster.operator_kubeconfig(tmp_path / 'proxied.kubeconfig', server=proxy.url)


def _rolled_out(obj: Obj) -> bool:
    """What a real deployment controller writes last: every replica updated and available."""
    status, want = obj.get('status') or {}, obj['spec'].get('replicas', 1)
    conditions = {c['type']: c for c in status.get('conditions') or ()}
    return (status.get('observedGeneration') == obj['metadata']['generation']
            and all(status.get(field, 0) == want
                    for field in ('replicas', 'updatedReplicas', 'readyReplicas', 'availableReplicas'))
            and conditions.get('Progressing', {}).get('reason') == 'NewReplicaSetAvailable'
            and conditions.get('Available', {}).get('status') == 'True')


def _settle(cluster: Cluster, namespace: str) -> dict[str, Obj]:
    """
    The truth once the cluster's controllers are done writing status to ``namespace``'s
    Deployments (at once on the emulator: nobody writes there but the test).
    """
    if cluster.emulated:
        return cluster.truth({namespace})
    deadline = time.monotonic() + SETTLE
    while True:
        truth = cluster.truth({namespace})
        if all(_rolled_out(obj) for obj in truth.values()):
            return truth
        assert time.monotonic() < deadline, {o['metadata']['name']: o.get('status') for o in truth.values()}
        time.sleep(0.2)


def _consistent(operator: OperatorProcess, cluster: Cluster, namespace: str, *,
                before: list[Event] = ()) -> list[str]:  # type: ignore[assignment]
    """Settle, then wait for the stream to agree with the server; the mismatches left."""
    _settle(cluster, namespace)
    return wait_until_consistent(operator, lambda: cluster.truth({namespace}), namespaces={namespace},
                                 before=before, timeout=CONSISTENT)


def _start_watching(cluster: Cluster, start_operator: StartOperator, kubeconfig: pathlib.Path, *,
                    names: list[str], prefix: str,
                    env: dict[str, str] | None = None) -> tuple[str, OperatorProcess]:
    """Deployments ``names`` in a new namespace, the operator listing them, and its watch proven open."""
    namespace = cluster.new_namespace(prefix)
    for name in names:
        cluster.create(deployment(name, namespace=namespace))
    operator = start_operator(f'--namespace={namespace}', env={**RESYNC_OFF, **(env or {})},
                              kubeconfig=kubeconfig)
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', len(names), what='the initial ADDED')
    cluster.create(deployment('sentinel', namespace=namespace))
    assert operator.wait_for(of('sentinel', 'ADDED'), what='sentinel: the watch is open')['initial'] is False
    return namespace, operator


def _image(cluster: Cluster, namespace: str, name: str, image: str) -> Obj:
    return cluster.patch(namespace, name, {'spec': {'template': {'spec': {'containers': [
        {'name': 'app', 'image': image}]}}}})


def _listings(cluster: Cluster, *, since: float) -> int | None:
    """
    How often the operator listed Deployments since ``since`` (first pages only), from the
    emulator's request log, or the audit log of the loopback control plane (REALK8S_DIR)
    when it is the cluster under test; None when neither is at hand.
    """
    user = cluster.operator_user()
    if isinstance(cluster, EmulatedCluster):
        return sum(1 for r in list(cluster.server.server.log.by(user))
                   if r.time >= since and is_listing(r) and 'continue=' not in r.query)
    plane = ControlPlane.from_environment()
    if plane is None or (identity.server_of(plane.directory / 'kubeconfig')
                         != identity.server_of(cluster.kubeconfig)):
        return None
    return sum(1 for e in plane.audit(user, since=since) if _lists(e))


def _lists(entry: Obj) -> bool:
    """An audit entry of a listing: a LIST's first page."""
    return (entry.get('objectRef', {}).get('resource') == 'deployments' and entry.get('verb') == 'list'
            and 'continue=' not in entry.get('requestURI', ''))


def _figures(test: str, **figures: object) -> None:
    """What a scenario measured, in its captured output (``pytest -rP`` or ``-s`` shows it)."""
    print(f'network: {test}: ' + ', '.join(f'{key} {value}' for key, value in figures.items()))


def _tally(events: list[Event]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        kind = event['type'] + ('(inferred)' if event.get('inferred') else '')
        counts[kind] = counts.get(kind, 0) + 1
    return counts


@pytest.mark.parametrize('reset', [True, False], ids=['reset', 'close'])
def test_cut_connections_resume_the_watch_from_its_resource_version(
        cluster: Cluster, proxy: Proxy, proxied: pathlib.Path, start_operator: StartOperator,
        reset: bool) -> None:
    since = time.time()
    namespace, operator = _start_watching(cluster, start_operator, proxied, names=['a', 'b', 'c'],
                                          prefix='cut')
    rounds = [('a', 'b', 'd', 'c', 'nginx:1.27'),  # scale one, re-image one, create one, delete one
              ('d', 'a', 'e', 'b', 'nginx:1.29')]
    cut = 0
    for scaled, imaged, created, deleted, image in rounds:
        connections = proxy.connections
        cut += proxy.cut(reset=reset)
        # While the operator reconnects (its first retry is a second away):
        cluster.patch(namespace, scaled, {'spec': {'replicas': 3}})
        _image(cluster, namespace, imaged, image)
        cluster.create(deployment(created, namespace=namespace))
        cluster.delete(namespace, deleted)
        proxy.wait_for_connections(connections + 1)

    assert _consistent(operator, cluster, namespace) == []
    initial = operator.matching(lambda e: e['type'] == 'ADDED' and e['initial'])
    assert sorted(e['name'] for e in initial) == ['a', 'b', 'c']  # listed once, never again
    assert operator.matching(lambda e: 'inferred' in e) == []  # resumed, not relisted
    listings = _listings(cluster, since=since)
    assert listings in (1, None)
    assert sorted(e['name'] for e in operator.matching(lambda e: e['type'] == 'ADDED' and not e['initial'])) \
        == ['d', 'e', 'sentinel']
    assert sorted(e['name'] for e in operator.matching(lambda e: e['type'] == 'DELETED')) == ['b', 'c']
    assert operator.process.poll() is None
    assert 'Traceback' not in operator.stderr
    _figures(f'cut-{"reset" if reset else "close"}', connections_cut=cut, test_changes=8,
             events=_tally(operator.events), proxy_connections=proxy.connections, listings=listings)


OUTAGE = 15.0  # seconds the server cannot be reached


def test_an_unreachable_server_warns_once_and_loses_nothing(
        cluster: Cluster, proxy: Proxy, proxied: pathlib.Path, start_operator: StartOperator) -> None:
    since = time.time()
    namespace, operator = _start_watching(cluster, start_operator, proxied, names=['a', 'b', 'c'],
                                          prefix='outage')
    before = len(operator.events)
    began = time.monotonic()
    proxy.refuse()
    steps: list[Callable[[], object]] = [
        functools.partial(cluster.patch, namespace, 'a', {'spec': {'replicas': 2}}),
        functools.partial(cluster.delete, namespace, 'b'),
        functools.partial(cluster.create, deployment('d', namespace=namespace)),
        functools.partial(_image, cluster, namespace, 'c', 'nginx:1.27'),
        functools.partial(cluster.patch, namespace, 'd', {'metadata': {'labels': {'tier': 'web'}}}),
        functools.partial(cluster.create, deployment('e', namespace=namespace)),
    ]
    for i, step in enumerate(steps):  # spread over the outage: early, middle and late changes
        time.sleep(max(0.0, began + i * OUTAGE / len(steps) - time.monotonic()))
        step()
    time.sleep(max(0.0, began + OUTAGE - time.monotonic()))  # the outage itself, not a wait for a result
    assert operator.process.poll() is None
    proxy.accept()
    reachable = time.monotonic()

    assert _consistent(operator, cluster, namespace) == []
    caught_up = time.monotonic() - reachable
    assert operator.process.poll() is None
    stderr = operator.stderr
    assert stderr.count('cannot be reached') == 1, stderr
    assert stderr.count('answers again after') == 1, stderr
    assert 'Traceback' not in stderr, stderr
    listings = _listings(cluster, since=since)
    # The watch resumed: one listing, where the server's log is at hand (always on the emulator);
    # on every cluster, nothing inferred and no ADDED of d or e from a listing (next lines).
    assert listings == 1 or (listings is None and not cluster.emulated)
    assert operator.matching(lambda e: 'inferred' in e) == []
    assert operator.wait_for(of('b', 'DELETED'), what='b DELETED')['object']['metadata']['name'] == 'b'
    assert sorted(e['name'] for e in operator.matching(lambda e: e['type'] == 'ADDED' and e['initial'])) \
        == ['a', 'b', 'c']
    _figures('unreachable', outage_s=OUTAGE, test_changes=len(steps), caught_up_after_s=f'{caught_up:.1f}',
             events_after=_tally(operator.events[before:]), connections=proxy.connections,
             listings=listings)


FROZEN = 15.0  # seconds the operator is stopped
FROZEN_CHANGES = 300
BULK = 'x' * 65536  # every event ~70 KB: 20 MB in all, more than the sockets on the way buffer (~10 MB)


def test_a_frozen_operator_ends_consistent_whatever_the_server_did_meanwhile(
        cluster: Cluster, proxy: Proxy, proxied: pathlib.Path, start_operator: StartOperator) -> None:
    names = [f'd{i}' for i in range(5)]
    since = time.time()
    namespace, operator = _start_watching(cluster, start_operator, proxied, names=names, prefix='frozen')
    before = len(operator.events)
    connections = proxy.connections
    began = time.monotonic()
    created: list[str] = []
    deleted: list[str] = []
    os.kill(operator.process.pid, signal.SIGSTOP)
    try:
        for i in range(FROZEN_CHANGES):
            if i % 30 == 29:  # now and then one comes, and an earlier newcomer goes
                created.append(f'n{i}')
                cluster.create(deployment(created[-1], namespace=namespace))
                if len(created) > 2:
                    deleted.append(created[-3])
                    cluster.delete(namespace, deleted[-1])
            else:
                cluster.patch(namespace, names[i % len(names)],
                              {'metadata': {'annotations': {'round': str(i), 'bulk': BULK}}})
        changed = time.monotonic() - began
        time.sleep(max(0.0, began + FROZEN - time.monotonic()))  # stay frozen for the whole period
    finally:
        os.kill(operator.process.pid, signal.SIGCONT)
    thawed = time.monotonic()

    assert _consistent(operator, cluster, namespace) == []
    caught_up = time.monotonic() - thawed
    assert operator.process.poll() is None
    assert 'Traceback' not in operator.stderr
    listings = _listings(cluster, since=since)
    inferred = operator.matching(lambda e: 'inferred' in e)
    initial = sorted(e['name'] for e in operator.matching(lambda e: e['type'] == 'ADDED' and e['initial']))
    # Listed once, the watch resumed (or never broke) and every change came from it. A real server
    # may instead close the watch of a reader that stopped reading and answer its resume with 410
    # Gone: a relist, which infers what the watch missed. The server's log says which (None: no
    # log of this cluster at hand); the emulator keeps its whole history, so there it resumed.
    resumed = listings == 1
    assert resumed or not cluster.emulated, listings
    assert (inferred == [] and initial == names) if resumed else (listings is None or listings > 1), listings
    _figures('frozen', frozen_s=FROZEN, test_changes=FROZEN_CHANGES, changes_took_s=f'{changed:.1f}',
             created=len(created), deleted=len(deleted), caught_up_after_s=f'{caught_up:.1f}',
             listings=listings, reconnects=proxy.connections - connections,
             events_after=_tally(operator.events[before:]))


def _saved(path: pathlib.Path) -> dict[str, str]:
    """What the state file holds: resourceVersion by uid."""
    saved = (state.load(path) if path.exists() else None) or {}
    return {uid: decode(raw)['metadata']['resourceVersion'] for uid, raw in saved.items()}


def test_a_restart_with_a_state_file_prints_only_what_changed_while_down(
        cluster: Cluster, proxied: pathlib.Path, start_operator: StartOperator,
        tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'state.json'
    env = {'DEPLOYWATCH_STATE_FILE': str(path)}
    namespace, first = _start_watching(cluster, start_operator, proxied, names=['a', 'b', 'c'],
                                       prefix='restart', env=env)
    # A real controller is still writing the new Deployments' status: let it finish and the
    # stream show it, so that "unchanged while down" means unchanged.
    assert _consistent(first, cluster, namespace) == []
    last = {e['uid']: e['resourceVersion'] for e in first.events}
    eventually(lambda: _saved(path) == last, what='the state file holds what was printed last')
    assert first.stop() == 0
    printed_a = [e for e in first.events if e['name'] == 'a'][-1]['object']

    # While deploywatch is down: a changes, b goes, d comes, c stays as it was.
    cluster.patch(namespace, 'a', {'spec': {'replicas': 3}})
    cluster.delete(namespace, 'b')
    cluster.create(deployment('d', namespace=namespace))
    _settle(cluster, namespace)  # a second run started mid-rollout would see it go on, rightly

    second = start_operator(f'--namespace={namespace}', env={**RESYNC_OFF, **env}, kubeconfig=proxied)
    assert _consistent(second, cluster, namespace, before=first.events) == []
    cluster.create(deployment('sentinel-2', namespace=namespace))  # everything before it has been printed
    second.wait_for(of('sentinel-2', 'ADDED'), what='second sentinel')
    changes = sorted((e['type'], e['name'], e.get('inferred'), e.get('initial'))
                     for e in second.events if e['name'] != 'sentinel-2')
    assert changes == [('ADDED', 'd', None, True), ('DELETED', 'b', True, None),
                       ('MODIFIED', 'a', True, None)]
    modified = second.wait_for(of('a', 'MODIFIED'), what='a')
    assert modified['old'] == printed_a
    assert modified['object']['spec']['replicas'] == 3
    assert 'Traceback' not in second.stderr
    _figures('restart', first_run=_tally(first.events), changes_while_down=3,
             second_run=_tally([e for e in second.events if e['name'] != 'sentinel-2']))


def forbidden_bound() -> float:
    """
    How long a 403 may be retried before the exit: deploywatch's own bound if it declares
    one (a grace for API servers that answer 403 right after a restart), plus a minute.
    """
    grace = getattr(watching, 'FORBIDDEN_GRACE', 0.0)
    return max(120.0, float(grace) + 60.0)


def test_a_service_account_without_rbac_gets_one_line_and_exit_3(
        cluster: Cluster, proxy: Proxy, start_operator: StartOperator, tmp_path: pathlib.Path) -> None:
    if cluster.emulated:  # CI time: 35 s that test_errors.py spends on the same path already
        pytest.skip('against the emulator, test_errors.py::test_forbidden_from_the_start_... proves this')
    namespace = cluster.new_namespace('forbidden')
    cluster.create(deployment('a', namespace=namespace))
    kubeconfig = cluster.operator_kubeconfig(tmp_path / 'none.kubeconfig', role='none', server=proxy.url)
    began = time.monotonic()

    operator = start_operator(f'--namespace={namespace}', kubeconfig=kubeconfig)

    bound = forbidden_bound()
    assert operator.process.wait(timeout=bound) == 3
    took = time.monotonic() - began
    stderr = operator.stderr
    ours = [line for line in stderr.splitlines() if line.startswith('deploywatch:')]
    assert len(ours) == 1 and ours[0].startswith('deploywatch: forbidden'), stderr
    assert 'deployments' in ours[0] and 'list and watch' in ours[0]
    assert 'Traceback' not in stderr, stderr
    assert operator.matching(lambda _: True) == []
    assert proxy.connections >= 1  # it did ask, through the proxy
    _figures('forbidden', exit_after_s=f'{took:.1f}', bound_s=bound)
