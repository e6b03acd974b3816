"""
The parts of kube-controller-manager that change Deployments, as tests need them.

* :func:`rolled_out` is the status the deployment controller writes once a
  rollout has finished (all replicas updated, ready and available), with the
  ``deployment.kubernetes.io/revision`` annotation it keeps, as the controller
  of a given version writes it (v1.37's adds ``terminatingReplicas``: 0,
  ``v1.37/get-after-rollout.json``). Tests write it
  through the ``status`` subresource, as the controller does, which leaves
  ``generation`` alone: the status-only change deploywatch must report.
* :class:`GarbageCollector` finishes foreground deletions: it removes the
  ``foregroundDeletion`` finalizer (there are no dependents to wait for here),
  which makes the store delete the object.
"""
import asyncio
import copy
from typing import Any

from deploywatch.testing import versions
from deploywatch.testing.store import Change, Store

REVISION = 'deployment.kubernetes.io/revision'


def rolled_out(obj: dict[str, Any], *, time: str,
               version: versions.KubeVersion = versions.DEFAULT) -> dict[str, Any]:
    """The whole object with the status of a finished rollout (for a PUT to /status), as
    ``version``'s deployment controller writes it (its store's ``version``, where known)."""
    new = copy.deepcopy(obj)
    replicas = new.get('spec', {}).get('replicas', 1)
    annotations = new['metadata'].setdefault('annotations', {})
    annotations.setdefault(REVISION, '1')
    counts = {'replicas': replicas, 'updatedReplicas': replicas, 'readyReplicas': replicas,
              'availableReplicas': replicas} if replicas else {}  # zero counts are omitted (omitempty)
    if version.terminating_replicas:
        counts['terminatingReplicas'] = 0  # a pointer: its 0 is written (sync.go's calculateStatus)
    new['status'] = {
        'observedGeneration': new['metadata'].get('generation', 1),
        **counts,
        'conditions': [
            {'type': 'Available', 'status': 'True', 'lastUpdateTime': time,
             'lastTransitionTime': time, 'reason': 'MinimumReplicasAvailable',
             'message': 'Deployment has minimum availability.'},
            {'type': 'Progressing', 'status': 'True', 'lastUpdateTime': time,
             'lastTransitionTime': time, 'reason': 'NewReplicaSetAvailable',
             'message': f'ReplicaSet "{new["metadata"]["name"]}" has successfully progressed.'},
        ],
    }
    return new


class GarbageCollector:
    def __init__(self, store: Store, *, delay: float = 0.05) -> None:
        self._store = store
        self._delay = delay
        self._unsubscribe = store.subscribe(self._notice)

    def close(self) -> None:
        self._unsubscribe()

    def _notice(self, change: Change) -> None:
        metadata = change.obj['metadata']
        if (change.type == 'MODIFIED' and 'deletionTimestamp' in metadata
                and 'foregroundDeletion' in (metadata.get('finalizers') or [])):
            asyncio.get_running_loop().call_later(self._delay, self._finish, change)

    def _finish(self, change: Change) -> None:
        namespace, name = change.key
        try:
            obj = self._store.get(change.resource, namespace, name)
        except Exception:  # gone already
            return
        finalizers = [f for f in obj['metadata'].get('finalizers') or [] if f != 'foregroundDeletion']
        obj['metadata']['finalizers'] = finalizers
        self._store.update(change.resource, namespace if change.resource.namespaced else '', name, obj,
                           manager='kube-controller-manager')

