"""
The HA overlay for real: two peering replicas through a kube-apiserver restart.

The overlay (``manifests/overlays/ha``) runs two replicas with Kopf peering; exactly
one, the one of higher priority, prints. A restart of the API server (the process
stopped, then started again by ``up.sh``, as in test_apiserver_restart.py) breaks
every watch of both replicas, the peering watch included, and answers 403 for its
first moments. What it shows, on the loopback control plane of ``tests/cluster``:

* the replicas run as a ServiceAccount bound to the overlay's rules (base RBAC plus
  ``peering.yaml``): no more is needed to ride out the restart;
* after the restart the same replica leads: every change is printed exactly once
  across the two streams together (never by both), by the leader, and its stream
  matches the server; neither replica exits.
"""
import pathlib
import time
from collections.abc import Callable, Iterator

import pytest

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import Event, OperatorProcess, eventually
from tests.harness.realk8s import ControlPlane
from tests.harness.reporting import report
from tests.harness.truth import mismatches
from tests.robustness.conftest import PEERING, Peers

DOWN_SECONDS = 15.0
CHANGES = 12  # made after the restart, by resourceVersion
SETTLE = 120.0  # bound for catching up: the watch loop's backoff reaches 16-30 s during the outage
Replica = Callable[[int], OperatorProcess]


@pytest.fixture
def restartable(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    yield control_plane
    control_plane.start_apiserver()  # whatever happened: the next test needs a server


def _resumed(operator: OperatorProcess) -> bool:
    """A replica with --peering starts paused (Kopf logs nothing then); this is its resuming."""
    return 'Not paused any more' in operator.stderr


def _wait_consistent(operator: OperatorProcess, cluster: Cluster, namespace: str) -> None:
    deadline = time.monotonic() + SETTLE
    while problems := mismatches(operator.matching(lambda e: e['namespace'] == namespace),
                                 cluster.truth({namespace})):
        if time.monotonic() > deadline:
            raise AssertionError(f'the leader is not consistent with the server: {problems}\n'
                                 f'{operator.stderr[-3000:]}')
        time.sleep(0.5)


def _changes(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e['namespace'], e['name'], e['resourceVersion']) for e in events if e['type'] != 'RESYNC']


@pytest.fixture
def replica(cluster: Cluster, start_operator: StartOperator, tmp_path: pathlib.Path) -> Replica:
    """Starts a replica of the HA overlay at a priority, as the ServiceAccount of its rules."""
    kubeconfig = cluster.operator_kubeconfig(tmp_path / 'ha.kubeconfig', role='ha')

    def replica(priority: int) -> OperatorProcess:
        return start_operator('--all-namespaces', f'--peering={PEERING}', f'--priority={priority}',
                              env={'DEPLOYWATCH_RESYNC_SECONDS': '0'}, kubeconfig=kubeconfig)
    return replica


def test_two_replicas_through_an_api_server_restart_print_each_change_once(
        peering_object: Peers, cluster: Cluster, restartable: ControlPlane, replica: Replica,
        request: pytest.FixtureRequest) -> None:
    namespace = cluster.new_namespace('ha')
    for name in ('a', 'b'):
        cluster.create(deployment(name, namespace=namespace))
    leader = replica(2)
    _wait_consistent(leader, cluster, namespace)
    assert _resumed(leader), leader.stderr
    standby = replica(1)
    eventually(lambda: len(peering_object()) == 2, what='both keep-alives in the peering object', timeout=60)
    assert not _resumed(standby), standby.stderr
    before = {'leader': len(leader.events), 'standby': 0}  # the standby's whole stream is checked at its end

    restartable.stop_apiserver()
    time.sleep(DOWN_SECONDS)
    restartable.start_apiserver()
    restarted = time.time()

    # One change right after the restart, while the replicas are still reconnecting; then,
    # with every watch live again, more: each must be printed exactly once, by the leader.
    written = [(namespace, 'a', cluster.patch(namespace, 'a', {'spec': {'replicas': 2}})
                ['metadata']['resourceVersion'])]
    _wait_consistent(leader, cluster, namespace)
    for index in range(CHANGES):
        name = 'b' if index % 2 else 'a'
        body = cluster.patch(namespace, name, {'metadata': {'labels': {'step': str(index)}}})
        written.append((namespace, name, body['metadata']['resourceVersion']))
    _wait_consistent(leader, cluster, namespace)

    for role, operator in (('leader', leader), ('standby', standby)):
        assert operator.process.poll() is None, f'the {role} exited\n{operator.stderr[-5000:]}'
        assert 'deploywatch: forbidden' not in operator.stderr, f'{role}: {operator.stderr[-5000:]}'
        operator.check()
    assert not _resumed(standby), f'the standby resumed:\n{standby.stderr[-5000:]}'
    assert standby.stop() == 0 and standby.at_eof, standby.stderr[-3000:]  # every line it printed is read
    led = _changes([e for e in leader.events[before['leader']:] if e['namespace'] == namespace])
    stood = _changes([e for e in standby.events[before['standby']:] if e['namespace'] == namespace])
    # The first change may be folded into the listing after the restart (the watch cannot resume):
    # printed at most once, then; every later one exactly once. Never by the standby.
    for index, change in enumerate(written):
        times = f'{change}: {led.count(change)} times by the leader, {stood.count(change)} by the standby'
        assert (led + stood).count(change) in ({0, 1} if index == 0 else {1}), times
        assert stood.count(change) == 0, times
    assert stood == [], f'the paused replica printed after the restart: {stood}'
    assert not [e for e in leader.events[before['leader']:] if e['type'] == 'ADDED'], 'ADDED again'
    forbidden = len([e for e in restartable.audit(cluster.operator_user('ha'), since=restarted)
                     if e.get('responseStatus', {}).get('code') == 403])
    report(request.config, f'HA overlay, kube-apiserver v{restartable.version} restart', {
        'changes once every watch was live (each printed once, by the leader)': len(written) - 1,
        'the change made while reconnecting printed (else folded into the listing)': written[0] in led,
        'events printed after the restart by the leader': len(leader.events) - before['leader'],
        'by the paused replica': len(standby.events) - before['standby'],
        '403 answers to the replicas after the restart (audit log)': forbidden})
