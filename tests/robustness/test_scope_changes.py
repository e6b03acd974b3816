"""
A state file meets a narrower scope: restored Deployments of namespaces this run does not watch.

A run with ``--all-namespaces`` saves every Deployment; a run with ``--namespace=x`` (or a
glob) restores them all, but lists only x. What it restored elsewhere is never confirmed
nor denied by any listing: each is ended with one DELETED marked ``inferred`` (as a
Deployment that leaves a label selector is), forgotten from the state file, never
RESYNCed. Watched again later, it is a new ADDED (``initial``). Runs on both clusters.
"""
import pathlib

import pytest

from deploywatch.runtime import state
from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import Event, Predicate, eventually

RESYNC = '0.3'


def _in(namespace: str, type_: str | None = None) -> Predicate:
    return lambda e: e['namespace'] == namespace and (type_ is None or e['type'] == type_)


def _saved(path: pathlib.Path) -> set[str]:
    return set((state.load(path) if path.exists() else None) or {})


@pytest.mark.parametrize('mode', ['namespace', 'glob'])
def test_restored_deployments_of_namespaces_out_of_scope_end_with_one_inferred_deleted(
        cluster: Cluster, start_operator: StartOperator, tmp_path: pathlib.Path, mode: str) -> None:
    kept, left = cluster.new_namespace('kept'), cluster.new_namespace('left')
    uids = {(namespace, name): cluster.create(deployment(name, namespace=namespace))['metadata']['uid']
            for namespace in (kept, left) for name in ('a', 'b')}
    path = tmp_path / 'state.json'
    env = {'DEPLOYWATCH_STATE_FILE': str(path), 'DEPLOYWATCH_RESYNC_SECONDS': RESYNC}
    first = start_operator('--all-namespaces', env=env)
    for namespace in (kept, left):
        first.wait_for_count(_in(namespace, 'ADDED'), 2, what=f'ADDED in {namespace}')
    eventually(lambda: set(uids.values()) <= _saved(path), what='all four saved')
    assert first.stop() == 0

    if mode == 'glob':  # matches the kept namespace only ('kept-…'), resolved by Kopf
        second = start_operator('--namespace=kept-*', env=env,
                                kubeconfig=cluster.operator_kubeconfig(tmp_path / 'globs.kubeconfig',
                                                                       role='globs'))
    else:
        second = start_operator(f'--namespace={kept}', env=env)

    ended = second.wait_for_count(_in(left, 'DELETED'), 2, what=f'DELETED of the restored ones in {left}')
    assert sorted((e['uid'], e['inferred']) for e in ended) \
        == sorted((uids[left, name], True) for name in ('a', 'b'))
    after = len(second.events)
    second.wait_for_count(_in(kept, 'RESYNC'), 4, what='two RESYNC rounds in scope', after=after)
    assert [e for e in second.events if e['namespace'] == left and e not in ended] == []  # no RESYNC
    eventually(lambda: not {uids[left, 'a'], uids[left, 'b']} & _saved(path), what='forgotten from the state')
    assert {uids[kept, 'a'], uids[kept, 'b']} <= _saved(path)
    assert 'no watch covers' in second.stderr and left in second.stderr  # one line says why
    assert second.stop() == 0

    third = start_operator('--all-namespaces', env=env)  # in scope again: found, as new
    again = third.wait_for_count(_in(left, 'ADDED'), 2, what=f'ADDED in {left} again')
    assert all(e['initial'] for e in again)
    assert third.matching(lambda e: e['namespace'] in (kept, left) and e['type'] == 'DELETED') == []


def test_a_run_in_the_same_scope_ends_nothing(
        cluster: Cluster, start_operator: StartOperator, tmp_path: pathlib.Path) -> None:
    namespace = cluster.new_namespace('same')
    uid = cluster.create(deployment('a', namespace=namespace))['metadata']['uid']
    path = tmp_path / 'state.json'
    env = {'DEPLOYWATCH_STATE_FILE': str(path), 'DEPLOYWATCH_RESYNC_SECONDS': RESYNC}
    first = start_operator(f'--namespace={namespace}', env=env)
    first.wait_for(_in(namespace, 'ADDED'), what='ADDED')
    eventually(lambda: uid in _saved(path), what='saved')
    assert first.stop() == 0

    second = start_operator(f'--namespace={namespace}', env=env)
    second.wait_for_count(_in(namespace, 'RESYNC'), 2, what='RESYNC of the restored one, confirmed')
    deleted: list[Event] = second.matching(lambda e: e['type'] == 'DELETED')
    assert deleted == []
    assert 'no watch covers' not in second.stderr


def test_restored_deployments_of_a_namespace_deleted_meanwhile_end_with_one_inferred_deleted(
        cluster: Cluster, start_operator: StartOperator, tmp_path: pathlib.Path) -> None:
    """
    Issue 20, item 3: with a glob, a namespace deleted while deploywatch was down still matches
    it, but Kopf starts no watch for a namespace that does not exist: before, its restored
    Deployments were never ended (no DELETED) and stayed in the state file for good.
    """
    doomed, kept = cluster.new_namespace('meanwhile'), cluster.new_namespace('meanwhile')
    uids = {namespace: cluster.create(deployment('a', namespace=namespace))['metadata']['uid']
            for namespace in (doomed, kept)}
    path = tmp_path / 'state.json'
    env = {'DEPLOYWATCH_STATE_FILE': str(path), 'DEPLOYWATCH_RESYNC_SECONDS': RESYNC}
    globs = cluster.operator_kubeconfig(tmp_path / 'globs.kubeconfig', role='globs')
    patterns = [f'--namespace={doomed[:-2]}*', f'--namespace={kept[:-2]}*']  # globs, each matching one
    first = start_operator(*patterns, env=env, kubeconfig=globs)
    for namespace in (doomed, kept):
        first.wait_for(_in(namespace, 'ADDED'), what=f'ADDED in {namespace}')
    eventually(lambda: set(uids.values()) <= _saved(path), what='both saved')
    assert first.stop() == 0

    cluster.delete_namespace(doomed)
    eventually(lambda: not cluster.namespace_exists(doomed), what=f'{doomed} gone', timeout=90)

    second = start_operator(*patterns, env=env, kubeconfig=globs)
    ended = second.wait_for(_in(doomed, 'DELETED'), what=f'DELETED of the restored one in {doomed}')
    assert (ended['uid'], ended['inferred']) == (uids[doomed], True)
    after = len(second.events)
    second.wait_for_count(_in(kept, 'RESYNC'), 2, what='two RESYNC rounds of the one alive', after=after)
    assert [e['type'] for e in second.events if e['namespace'] == doomed] == ['DELETED']
    eventually(lambda: uids[doomed] not in _saved(path), what='forgotten from the state file')
    assert uids[kept] in _saved(path)
    assert second.stop() == 0
