"""
A kube-apiserver restart, for real: the process stopped, then started again by ``up.sh``.

Only the loopback control plane of ``tests/cluster`` can play it (the emulator's
outage is a refused port, not a server that comes back with empty caches): this is
what an upgrade or a crash of the control plane does to every watcher. What it shows:

* the server answers 403 for its first moments (v1.24: before its RBAC caches are
  synced); deploywatch rides that out instead of exiting with status 3;
* the watch cannot resume where it was (v1.24: ``410 too old resource version``, the
  new watch cache starts at the current etcd revision), so deploywatch lists again,
  and prints nothing for what did not change;
* in every scoping mode (one namespace, a glob, all namespaces), every change made
  after the restart is printed exactly once, and the stream matches the server.
"""
import pathlib
import time
from collections.abc import Iterator

import pytest

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import Event, OperatorProcess
from tests.harness.realk8s import ControlPlane
from tests.harness.reporting import report
from tests.harness.truth import mismatches

DOWN_SECONDS = 15.0
CHANGES = 12  # made after the restart, by resourceVersion
SETTLE = 120.0  # bound for catching up: the watch loop's backoff reaches 16-30 s during the outage


@pytest.fixture
def restartable(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    yield control_plane
    control_plane.start_apiserver()  # whatever happened: the next test needs a server


def _consistent(operator: OperatorProcess, cluster: Cluster, namespaces: set[str]) -> list[str]:
    events = operator.matching(lambda e: e['namespace'] in namespaces)
    return mismatches(events, cluster.truth(namespaces))


def _wait_consistent(operators: dict[str, tuple[OperatorProcess, set[str]]], cluster: Cluster) -> None:
    """Until each operator's stream matches the server in the namespaces it watches."""
    deadline = time.monotonic() + SETTLE
    while True:
        problems = {mode: found for mode, (op, scope) in operators.items()
                    if (found := _consistent(op, cluster, scope))}
        if not problems:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f'not consistent after the restart: {problems}')
        time.sleep(0.5)


def _lists(plane: ControlPlane, user: str, namespace: str | None, *, since: float) -> int:
    """How often ``user`` listed Deployments in ``namespace`` (None: cluster-wide) since then."""
    return len([entry for entry in plane.audit(user, since=since)
                if entry.get('verb') == 'list' and entry.get('objectRef', {}).get('resource') == 'deployments'
                and entry.get('objectRef', {}).get('namespace') == namespace])


def test_a_restarted_api_server_loses_and_repeats_nothing_in_every_mode(
        cluster: Cluster, restartable: ControlPlane, start_operator: StartOperator,
        tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> None:
    exact, globbed = cluster.new_namespace('x'), cluster.new_namespace('g')
    namespaces = {exact, globbed}
    for namespace in namespaces:
        for name in ('a', 'b'):
            cluster.create(deployment(name, namespace=namespace))
    globs = cluster.operator_kubeconfig(tmp_path / 'globs.kubeconfig', role='globs')
    env = {'DEPLOYWATCH_RESYNC_SECONDS': '0'}
    operators = {
        'namespace': (start_operator(f'--namespace={exact}', env=env), {exact}),
        'glob': (start_operator('--namespace=g-*', env=env, kubeconfig=globs), {globbed}),
        'all-namespaces': (start_operator('--all-namespaces', env=env), namespaces),
    }
    _wait_consistent(operators, cluster)
    before = {mode: len(op.events) for mode, (op, _) in operators.items()}

    restartable.stop_apiserver()
    time.sleep(DOWN_SECONDS)
    restartable.start_apiserver()
    restarted = time.time()

    # Changes right after the restart, while the operators are still reconnecting.
    written: list[tuple[str, str, str]] = []  # (namespace, name, resourceVersion) of every write of ours
    for namespace in namespaces:
        written.append((namespace, 'a', cluster.patch(namespace, 'a', {'spec': {'replicas': 2}})
                        ['metadata']['resourceVersion']))
    _wait_consistent(operators, cluster)
    # Then, with every watch live again, more changes: each must be printed exactly once.
    for index in range(CHANGES // 2):
        for namespace in sorted(namespaces):
            name = 'b' if index % 2 else 'a'
            body = cluster.patch(namespace, name, {'metadata': {'labels': {'step': str(index)}}})
            written.append((namespace, name, body['metadata']['resourceVersion']))
    _wait_consistent(operators, cluster)

    late = written[len(namespaces):]
    for mode, (operator, scope) in operators.items():
        assert operator.process.poll() is None, f'{mode}: exited\n{operator.stderr}'
        assert 'deploywatch: forbidden' not in operator.stderr, f'{mode}: {operator.stderr}'
        after: list[Event] = [e for e in operator.events[before[mode]:] if e['namespace'] in scope]
        printed = [(e['namespace'], e['name'], e['resourceVersion']) for e in after if not e.get('inferred')]
        for change in [c for c in late if c[0] in scope]:
            assert printed.count(change) == 1, f'{mode}: {change} printed {printed.count(change)} times'
        assert not [e for e in after if e['type'] == 'ADDED'], f'{mode}: ADDED again after the restart'
        operator.check()
    counts = {mode: len(op.events) - before[mode] for mode, (op, _) in operators.items()}
    relisted = {mode: _lists(restartable, cluster.operator_user(role), namespace, since=restarted)
                for mode, role, namespace in [('namespace', 'plain', exact), ('glob', 'globs', globbed),
                                              ('all-namespaces', 'plain', None)]}
    forbidden = {user: len([e for e in restartable.audit(user, since=restarted)
                            if e.get('responseStatus', {}).get('code') == 403])
                 for user in {cluster.operator_user('plain'), cluster.operator_user('globs')}}
    report(request.config, f'kube-apiserver v{restartable.version} restart', {
        'changes after reconnecting (each printed once in its scope)': len(late),
        'events printed after the restart per mode': counts,
        '403 answers to the operators after the restart (audit log)': forbidden,
        'listings after the restart (the watch could not resume) per mode': relisted})
