"""
Order after a relist: a Deployment deleted and recreated under the same name while the
stream was down ends its old self (DELETED, inferred) *before* the new one's ADDED.

A consumer keyed on namespace/name (``kubectl get -w``'s reader, a dashboard, a CMDB) that
saw ADDED of the new uid and then DELETED of the old one would believe the Deployment gone
while it exists. tests/harness/truth.py compares per uid, so this order is asserted here.

The emulator plays the relist after ``410 Gone``; a real server gives a 410 only when its
watch cache has moved on past the operator's resourceVersion (it grows to keep 75 s of
history, so not within seconds): there, a restart with a state file takes the same path,
the first listing compared with the restored memory (``cluster`` runs it on both).
"""
import pathlib

from deploywatch.runtime import state
from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.driver import Driver
from tests.harness.operator import Event, OperatorProcess, Predicate, eventually, of
from tests.harness.truth import wait_until_consistent
from tests.robustness.conftest import Start
from tests.robustness.test_disconnects import outage


def _by_name(events: list[Event], name: str) -> list[tuple[str, str, bool | None, bool | None]]:
    return [(e['type'], e['uid'], e.get('inferred'), e.get('initial')) for e in events
            if e['name'] == name and e['type'] != 'RESYNC']


def test_a_recreated_deployment_is_deleted_before_it_is_added_again_after_a_410_relist(
        driver: Driver, start: Start) -> None:
    namespace = driver.namespace('order')
    for name in ('a', 'b', 'c'):
        driver.create(namespace, name)
    old = driver.truth_uid(namespace, 'b')
    operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0'})
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', 3, what='three initial ADDED')
    before = len(operator.events)

    with outage(driver, operator):
        driver.delete(namespace, 'b')
        driver.create(namespace, 'b')
        new = driver.truth_uid(namespace, 'b')
        driver.compact()  # the watch cannot resume: 410 Gone, then a relist

    assert wait_until_consistent(operator, driver.truth) == []
    assert _by_name(operator.events[before:], 'b') == [('DELETED', old, True, None),
                                                       ('ADDED', new, None, True)]
    assert [e['name'] for e in operator.events[before:]] == ['b', 'b']  # a and c: unchanged, silent


def test_a_recreated_deployment_is_deleted_before_it_is_added_again_after_a_restart(
        cluster: Cluster, start_operator: StartOperator, tmp_path: pathlib.Path) -> None:
    namespace = cluster.new_namespace('order')
    for name in ('a', 'b'):
        cluster.create(deployment(name, namespace=namespace))
    path = tmp_path / 'state.json'
    env = {'DEPLOYWATCH_STATE_FILE': str(path), 'DEPLOYWATCH_RESYNC_SECONDS': '0'}
    first = start_operator(f'--namespace={namespace}', env=env)
    old = first.wait_for(of('b', 'ADDED'), what='b listed')['uid']
    first.wait_for(of('a', 'ADDED'), what='a listed')
    eventually(lambda: old in _saved(path), what='the state file holds b')
    assert first.stop() == 0

    cluster.delete(namespace, 'b')
    _wait_gone(cluster, namespace, 'b', old)
    new = cluster.create(deployment('b', namespace=namespace))['metadata']['uid']

    second = start_operator(f'--namespace={namespace}', env=env)
    history = _by_name(_until(second, of('b', 'ADDED')), 'b')
    assert history == [('DELETED', old, True, None), ('ADDED', new, None, True)]
    assert wait_until_consistent(second, lambda: cluster.truth({namespace}), namespaces={namespace},
                                 before=first.events) == []
    assert 'Traceback' not in second.stderr


def _saved(path: pathlib.Path) -> dict[str, bytes]:
    return (state.load(path) if path.exists() else None) or {}


def _until(operator: OperatorProcess, predicate: Predicate) -> list[Event]:
    """The events up to and including the first that matches."""
    found = operator.wait_for(predicate, what='the new one listed')
    return operator.events[:operator.events.index(found) + 1]


def _wait_gone(cluster: Cluster, namespace: str, name: str, uid: str) -> None:
    """A real Deployment with its ReplicaSets may take a moment to be gone (garbage collection)."""
    eventually(lambda: uid not in cluster.truth({namespace}), what=f'{namespace}/{name} gone')
