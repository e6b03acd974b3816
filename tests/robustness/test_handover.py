"""
HA hand-overs lose no deletion (issue 20, item 4): what the replicas' streams hold together.

With peering, one replica prints; a standby keeps watching and prints only the DELETED of a
Deployment it printed itself, and when it starts to lead, the DELETED lines it saw meanwhile
and the current state of every Deployment (``ADDED``, ``initial``). What a consumer of the
merged stream (``kubectl logs -l ... --max-log-requests=2``, Fluent Bit on both pods) gets:

* every Deployment that was printed and is gone has a DELETED in one stream or both, with
  the same ``id`` when both printed it;
* the replica that leads ends up printing the server's current state.

Two hand-overs: a replica of higher priority takes the lead while the leader's reader is
behind (its DELETED waited in its memory, and was dropped before); and the leader killed,
a Deployment deleted before the standby takes over (its listing at the take-over did not
have it, and it had never listed before). Both on the emulator and on the real servers.
"""
import pathlib
import signal
import urllib.error
from collections.abc import Callable, Iterator

import pytest

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.deploy import peering
from tests.harness.clusters import Cluster, EmulatedCluster
from tests.harness.operator import Event, OperatorProcess, eventually
from tests.harness.probes import free_port, scrape, value
from tests.harness.truth import mismatches
from tests.robustness.conftest import PEERING

Replica = Callable[..., OperatorProcess]
TAKE_OVER = 120.0  # Kopf's peering lifetime (60 s) after a kill, and the keep-alive's rounds


@pytest.fixture(autouse=True)
def peering_served(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> Iterator[None]:
    """Before the emulated server starts (autouse fixtures come first): it serves ClusterKopfPeerings."""
    peering.serve(monkeypatch, tmp_path)
    yield


@pytest.fixture
def replica(cluster: Cluster, tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> Replica:
    """
    A replica of the HA overlay at a priority (the overlay's identity on the real servers). The
    peering object comes first, so that it goes last: the replicas stop before it is deleted.
    """
    if isinstance(cluster, EmulatedCluster):
        body = {'apiVersion': 'kopf.dev/v1', 'kind': 'ClusterKopfPeering', 'metadata': {'name': PEERING}}
        store = cluster.server.server.store
        cluster.server.call(store.create, peering.CLUSTER_PEERINGS, '', body, manager='kubectl')
        kubeconfig = cluster.server.kubeconfig(tmp_path / 'peering.kubeconfig')  # peering patches
    else:
        request.getfixturevalue('peering_object')
        kubeconfig = cluster.operator_kubeconfig(tmp_path / 'ha.kubeconfig', role='ha')
    start_operator: StartOperator = request.getfixturevalue('start_operator')

    def replica(priority: int, **env: str) -> OperatorProcess:
        return start_operator('--all-namespaces', f'--peering={PEERING}', f'--priority={priority}',
                              env={'DEPLOYWATCH_RESYNC_SECONDS': '0', **env}, kubeconfig=kubeconfig)
    return replica


def _standing_by(operator: OperatorProcess) -> bool:
    return 'Pausing operations in favour of' in operator.stderr  # Kopf's, as peering pauses it


def _tracked(port: int) -> float:
    """How many Deployments a replica knows, from its /metrics; 0 until it serves them."""
    try:
        return value(scrape(port), 'deploywatch_deployments_tracked')
    except urllib.error.URLError:
        return 0.0


def _in(namespace: str, operator: OperatorProcess) -> list[Event]:
    return operator.matching(lambda e: e['namespace'] == namespace)


def test_a_higher_priority_replica_taking_the_lead_while_the_reader_is_behind_loses_no_deleted(
        cluster: Cluster, replica: Replica) -> None:
    namespace = cluster.new_namespace('handover')
    names = [f'd{index}' for index in range(6)]
    uid = {name: cluster.create(deployment(name, namespace=namespace, replicas=0))['metadata']['uid']
           for name in names}
    first = replica(1)
    first.wait_for_count(lambda e: e['namespace'] == namespace and e['type'] == 'ADDED', len(names),
                         what='the only replica listing')

    first.pause_reading()  # its reader is stuck: what it sees now waits in its memory
    for index in range(150):  # ~1 MB of lines: far past what the pipe holds
        name = names[1 + index % (len(names) - 1)]
        cluster.patch(namespace, name, {'metadata': {'annotations': {'pad': f'{index:04d}' + 'x' * 4000}}})
    cluster.delete(namespace, 'd0')
    second = replica(2)  # takes the lead; its listing has no d0, which it never knew
    eventually(lambda: not mismatches(_in(namespace, second), cluster.truth({namespace}),
                                      namespaces={namespace}),
               what='the new leader consistent with the server in the namespace')
    eventually(lambda: _standing_by(first), what='the first replica standing by')
    first.resume_reading()

    deleted = first.wait_for(lambda e: e['uid'] == uid['d0'] and e['type'] == 'DELETED',
                             what='the DELETED of d0, by the replica that printed d0')
    assert [e for e in _in(namespace, second) if e['uid'] == uid['d0']] == []  # the new leader never knew it
    assert not deleted.get('inferred')  # the watch event itself, not a guess
    for operator in (first, second):
        assert operator.process.poll() is None, operator.stderr[-3000:]
        operator.check()


def test_a_deployment_deleted_before_the_standby_takes_over_from_a_killed_leader_is_deleted(
        cluster: Cluster, replica: Replica) -> None:
    namespace = cluster.new_namespace('handover')
    uid = {name: cluster.create(deployment(name, namespace=namespace, replicas=0))['metadata']['uid']
           for name in ('kept', 'gone')}
    leader = replica(2)
    leader.wait_for_count(lambda e: e['namespace'] == namespace and e['type'] == 'ADDED', 2,
                          what='the leader listing')
    metrics = free_port()
    standby = replica(1, DEPLOYWATCH_METRICS_PORT=str(metrics))
    # Every Deployment the server holds at each look (the namespaces of earlier tests may still
    # be going: a count taken once could include Deployments deleted since, never to be known).
    eventually(lambda: _tracked(metrics) >= len(cluster.truth()), what='the standby knowing every Deployment')

    leader.process.send_signal(signal.SIGKILL)  # its peering keep-alive stays until its lifetime ends
    leader.process.wait(timeout=30)
    cluster.delete(namespace, 'gone')  # long before the standby may take over
    cluster.patch(namespace, 'kept', {'metadata': {'labels': {'after': 'the-leader'}}})

    ended = standby.wait_for(lambda e: e['uid'] == uid['gone'], what='the DELETED of gone, at the take-over',
                             timeout=TAKE_OVER)
    assert ended['type'] == 'DELETED', ended
    kept = standby.wait_for(lambda e: e['uid'] == uid['kept'], what='the state of kept, at the take-over')
    assert (kept['type'], kept['initial'], kept['object']['metadata']['labels'].get('after')) \
        == ('ADDED', True, 'the-leader')  # the change while no one printed, folded into that state
    now = cluster.get(namespace, 'kept')['metadata']['resourceVersion']
    assert kept['resourceVersion'] == now
    printed = [(e['name'], e['type']) for e in _in(namespace, standby)]
    assert printed == [('gone', 'DELETED'), ('kept', 'ADDED')], printed
    assert 'Not paused any more' in standby.stderr
