"""
Behaviour 8: deploywatch writes nothing, and works with exactly the RBAC it ships.

The proof is the API server's own account of every request deploywatch sent: the
emulated server's request log (with the RBAC verb it saw), or, in a real cluster, the
audit log of the loopback control plane of tests/cluster (skipped where there is
none: another cluster's audit log is not ours to read). The operator runs as the
ServiceAccount of manifests/base/rbac.yaml (list and watch on deployments, nothing
else), so a request needing more would have been a 403 and broken the stream.
"""
import time
from typing import Any

import pytest

from deploywatch.testing.access import READ_VERBS, WRITE_VERBS
from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster, EmulatedCluster
from tests.harness.operator import Event, of
from tests.harness.realk8s import ControlPlane

# What manifests/base/rbac.yaml grants: list and watch deployments (+ discovery), both used.
GRANTED = {('list', 'apps', 'deployments'), ('watch', 'apps', 'deployments')}


def test_a_whole_lifecycle_sends_no_write_and_only_the_granted_verbs(
        cluster: Cluster, start_operator: StartOperator, request: pytest.FixtureRequest) -> None:
    control_plane: ControlPlane | None = None
    if not isinstance(cluster, EmulatedCluster):
        control_plane = request.getfixturevalue('control_plane')  # skips, with the reason, without one
    namespace = cluster.new_namespace()

    def ours(event: Event) -> bool:  # a real cluster may hold other Deployments
        return bool(event['namespace'] == namespace)

    cluster.create(deployment('existing', namespace=namespace))
    held = deployment('held', namespace=namespace)
    held['metadata']['finalizers'] = ['example.com/hold']
    cluster.create(held)
    since = time.time()
    operator = start_operator('--all-namespaces', env={'DEPLOYWATCH_RESYNC_SECONDS': '0.3'})
    try:
        operator.wait_for_count(lambda e: ours(e) and e['type'] == 'ADDED', 2, what='initial ADDED')

        cluster.create(deployment('fresh', namespace=namespace))
        cluster.patch(namespace, 'fresh', {'spec': {'replicas': 3}})
        cluster.finish_rollout(namespace, 'fresh')
        cluster.delete(namespace, 'fresh')
        cluster.delete(namespace, 'held')
        operator.wait_for(of('fresh', 'DELETED'), what='DELETED')
        operator.wait_for(lambda e: of('held', 'MODIFIED')(e) and _terminating(e),
                          what='held in deletion by its finalizer')
        operator.wait_for_count(lambda e: ours(e) and e['type'] == 'RESYNC', 4, what='resync rounds')
        assert operator.stop() == 0

        if isinstance(cluster, EmulatedCluster):
            log = cluster.server.server.log
            sent = log.by('deploywatch')
            assert sent, 'the operator sent no request at all?'
            assert log.writes(user='deploywatch') == []
            assert {r.verb for r in sent} <= READ_VERBS
            assert [r for r in sent if r.status == 403] == []
            assert {(r.verb, r.group, r.resource) for r in sent if r.resource} == GRANTED
        else:
            assert control_plane is not None
            audited = control_plane.audit(cluster.operator_user(), since=since)
            assert audited, f'no request of {cluster.operator_user()} in {control_plane.audit_log}?'
            assert [_request(e) for e in audited if e['verb'] in WRITE_VERBS] == []
            assert {e['verb'] for e in audited} <= READ_VERBS, [_request(e) for e in audited]
            assert [_request(e) for e in audited if e.get('responseStatus', {}).get('code') == 403] == []
            used = {(e['verb'], e['objectRef'].get('apiGroup', ''), e['objectRef'].get('resource'))
                    for e in audited if e.get('objectRef')}
            assert used == GRANTED, [_request(e) for e in audited]
        # And nothing of deploywatch ended up on the objects.
        remaining = cluster.get(namespace, 'held')
        assert remaining['metadata']['finalizers'] == ['example.com/hold']
        assert not any('kopf' in key for key in remaining['metadata'].get('annotations') or {})
    finally:  # let the namespace go (a real cluster's namespace controller waits for the finalizer)
        cluster.patch(namespace, 'held', {'metadata': {'finalizers': None}})


def _terminating(event: Event) -> bool:
    return 'deletionTimestamp' in event['object']['metadata']


def _request(entry: dict[str, Any]) -> str:
    """An audit entry, short: what a failure message shows."""
    code = entry.get('responseStatus', {}).get('code')
    return f"{entry['verb']} {entry['requestURI']} -> {code}"
