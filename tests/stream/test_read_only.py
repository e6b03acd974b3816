"""
Behaviour 8: deploywatch writes nothing, and works with exactly the RBAC it ships.

The proof is the emulated API server's request log: every request deploywatch
sent, with the RBAC verb the server saw. The operator runs as the ServiceAccount
of manifests/base/rbac.yaml (list and watch on deployments, nothing else), so a
request needing more would have been a 403 and broken the stream.
"""
import pytest

from deploywatch.testing.access import READ_VERBS
from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster, EmulatedCluster
from tests.harness.operator import of


def test_a_whole_lifecycle_sends_no_write_and_only_the_granted_verbs(
        cluster: Cluster, start_operator: StartOperator) -> None:
    if not isinstance(cluster, EmulatedCluster):
        pytest.skip('needs the API server request log, which only the emulated server exposes')
    namespace = cluster.new_namespace()
    cluster.create(deployment('existing', namespace=namespace))
    held = deployment('held', namespace=namespace)
    held['metadata']['finalizers'] = ['example.com/hold']
    cluster.create(held)
    operator = start_operator('--all-namespaces', env={'DEPLOYWATCH_RESYNC_SECONDS': '0.3'})
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', 2, what='initial ADDED')

    cluster.create(deployment('fresh', namespace=namespace))
    cluster.patch(namespace, 'fresh', {'spec': {'replicas': 3}})
    cluster.finish_rollout(namespace, 'fresh')
    cluster.delete(namespace, 'fresh')
    cluster.delete(namespace, 'held')
    operator.wait_for(of('fresh', 'DELETED'), what='DELETED')
    operator.wait_for(of('held', 'MODIFIED'), what='held in deletion by its finalizer')
    operator.wait_for_count(lambda e: e['type'] == 'RESYNC', 4, what='resync rounds')
    assert operator.stop() == 0

    log = cluster.server.server.log
    sent = log.by('deploywatch')
    assert sent, 'the operator sent no request at all?'
    assert log.writes(user='deploywatch') == []
    assert {r.verb for r in sent} <= READ_VERBS
    assert [r for r in sent if r.status == 403] == []
    # Exactly what manifests/base/rbac.yaml grants is used: list and watch deployments (+ discovery).
    used = {(r.verb, r.group, r.resource) for r in sent if r.resource}
    assert used == {('list', 'apps', 'deployments'), ('watch', 'apps', 'deployments')}
    # And nothing of deploywatch ended up on the objects.
    remaining = cluster.get(namespace, 'held')
    assert remaining['metadata']['finalizers'] == ['example.com/hold']
    assert not any('kopf' in key for key in remaining['metadata'].get('annotations') or {})
