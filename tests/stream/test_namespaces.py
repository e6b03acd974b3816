"""
Namespaces that leave the watch: deleted while deploywatch runs.

Deleting a namespace deletes its Deployments (the namespace controller does it in a
real cluster; the emulator at once). Whatever the scoping mode, every Deployment
deploywatch printed there must end with exactly one DELETED, and nothing may follow it:
with a glob, Kopf stops watching a namespace as soon as it is gone, possibly before the
Deployments' own DELETED events were read.
"""
import pathlib

import pytest

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import Predicate, eventually, of

NAMES = ('one', 'two', 'three')


def _in(namespace: str, type_: str, name: str | None = None) -> Predicate:
    return lambda e: (e['namespace'] == namespace and e['type'] == type_
                      and (name is None or e['name'] == name))


@pytest.mark.parametrize('mode', ['namespace', 'glob', 'all-namespaces'])
def test_a_deleted_namespace_ends_every_deployment_in_it_with_one_deleted(
        cluster: Cluster, start_operator: StartOperator, tmp_path: pathlib.Path, mode: str) -> None:
    doomed, kept = cluster.new_namespace('gone'), cluster.new_namespace('gone')
    for namespace in (doomed, kept):
        for name in NAMES:
            cluster.create(deployment(name, namespace=namespace))
    env = {'DEPLOYWATCH_RESYNC_SECONDS': '0.5'}
    if mode == 'glob':
        globs = cluster.operator_kubeconfig(tmp_path / 'globs.kubeconfig', role='globs')
        operator = start_operator('--namespace=gone-*', env=env, kubeconfig=globs)
    elif mode == 'namespace':
        operator = start_operator(f'--namespace={doomed}', f'--namespace={kept}', env=env)
    else:
        operator = start_operator('--all-namespaces', env=env)
    for namespace in (doomed, kept):
        operator.wait_for_count(_in(namespace, 'ADDED'), 3, what=f'ADDED in {namespace}')

    cluster.delete_namespace(doomed)

    for name in NAMES:
        operator.wait_for(_in(doomed, 'DELETED', name), what=f'DELETED of {doomed}/{name}', timeout=90)
    # The rest of the stream goes on, and nothing about the gone namespace follows.
    after = len(operator.events)
    operator.wait_for_count(_in(kept, 'RESYNC'), 6,
                            what='two RESYNC rounds in the namespace that stays', after=after)
    for name in NAMES:
        history = [e['type'] for e in operator.matching(of(name)) if e['namespace'] == doomed]
        assert history.count('DELETED') == 1, (name, history)
        tail = history[history.index('DELETED') + 1:]
        assert tail == [], (name, history)
    eventually(lambda: operator.process.poll() is None, what='still running')


def test_a_namespace_deleted_while_its_watch_is_paused_ends_its_deployments(
        cluster: Cluster, start_operator: StartOperator, tmp_path: pathlib.Path) -> None:
    """
    Issue 20, item 2: while stdout is behind, the Deployment watches are paused, but Kopf's
    namespace observer is not: it drops a deleted namespace and stops that namespace's watch,
    whose DELETED events were never read. Before, its Deployments were RESYNCed forever.
    """
    doomed, bulk = cluster.new_namespace('paused'), cluster.new_namespace('paused')
    cluster.create(deployment('one', namespace=doomed, replicas=0))
    for index in range(25):  # ~5 MB a RESYNC round: past HIGH_WATER (4 MiB) while nobody reads
        body = deployment(f'big-{index}', namespace=bulk, replicas=0)
        body['metadata']['annotations'] = {'blob': str(index % 10) * 200_000}
        cluster.create(body)
    globs = cluster.operator_kubeconfig(tmp_path / 'globs.kubeconfig', role='globs')
    operator = start_operator(f'--namespace={doomed[:-2]}*', f'--namespace={bulk[:-2]}*',
                              '--debug', env={'DEPLOYWATCH_RESYNC_SECONDS': '1'}, kubeconfig=globs)
    operator.wait_for(_in(doomed, 'ADDED'), what=f'ADDED in {doomed}')
    operator.wait_for_count(_in(bulk, 'ADDED'), 25, what=f'ADDED in {bulk}')
    operator.pause_reading()  # the next RESYNC round fills stdout: the watches pause, and stay paused
    # Paused now: its last pause came after stdout last caught up. The listing may have paused
    # it already (a slow reader of its 5 MB), so a pause before this point counts too.
    paused = f"Pausing the watch-stream for deployments.v1.apps in '{doomed}'"  # with --debug
    eventually(lambda: operator.stderr.rfind(paused) > operator.stderr.rfind('stdout is keeping up again'),
               what=f'the watch of {doomed} paused')

    cluster.delete_namespace(doomed)
    eventually(lambda: not cluster.namespace_exists(doomed), what=f'{doomed} gone', timeout=90)
    operator.resume_reading()

    ended = operator.wait_for(_in(doomed, 'DELETED', 'one'), what=f'DELETED of {doomed}/one')
    assert ended['inferred'] is True  # its own DELETED was never read: the watch was paused
    assert 'no watch covers' in operator.stderr  # one line says why
    after = len(operator.events)
    operator.wait_for_count(_in(bulk, 'RESYNC'), 50, what='two RESYNC rounds after it', after=after)
    history = [e['type'] for e in operator.matching(of('one')) if e['namespace'] == doomed]
    assert history[0] == 'ADDED' and history[-1] == 'DELETED' and history.count('DELETED') == 1, history


def test_a_glob_without_rights_on_namespaces_is_one_line_and_exit_3(
        cluster: Cluster, start_operator: StartOperator, tmp_path: pathlib.Path) -> None:
    """
    Issue 20, item 5: Kopf falls back to the exact namespaces given when it may not list
    namespaces, and a glob gives none: before, no Deployment watch ever started, stdout stayed
    empty and the process ran on as healthy. The base RBAC grants Deployments only.
    """
    namespace = cluster.new_namespace('noglob')
    cluster.create(deployment('web', namespace=namespace, replicas=0))
    plain = cluster.operator_kubeconfig(tmp_path / 'plain.kubeconfig', role='plain')
    operator = start_operator('--namespace=noglob-*', env={'DEPLOYWATCH_RESYNC_SECONDS': '0'},
                              kubeconfig=plain)
    assert operator.process.wait(timeout=60) == 3, operator.stderr[-3000:]
    ours = [line for line in operator.stderr.splitlines() if line.startswith('deploywatch:')]
    assert len(ours) == 1 and 'namespaces' in ours[0] and 'namespace-globs/rbac.yaml' in ours[0], ours
    assert operator.events == []
