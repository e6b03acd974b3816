"""
Where a Deployment's rollout stands, decided as ``kubectl rollout status`` decides it.

People and CI pipelines already trust ``kubectl rollout status`` to say "done" or
"stuck", so :func:`rollout` is a port of its ``DeploymentStatusViewer.Status``
(``k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go``), check for check and in
the same order (:func:`_checks`): the spec not yet observed, the progress deadline
exceeded (Failed), updated < wanted, old replicas left, available < updated, else
Complete. A missing ``spec.replicas`` counts as 1, as the API server defaults it.

Two differences, because the stream is about every rollout at once: ``spec.paused`` is
reported as Paused, whatever the checks say (a paused Deployment makes no progress
until resumed), and kubectl's extra pod lookups are left out (a request per event).
Like every fact in the summary, this never raises on an odd object.
"""
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

Status = Literal['Progressing', 'Complete', 'Failed', 'Paused']
TIMED_OUT = 'ProgressDeadlineExceeded'  # deploymentutil.TimedOutReason


class Rollout(TypedDict):
    status: Status
    message: str


def rollout(obj: Mapping[str, Any]) -> Rollout:
    """``summary.rollout`` of one Deployment state."""
    found = _checks(obj)
    if _dig(obj, 'spec').get('paused') is True:
        return {'status': 'Paused', 'message': f"paused ({found['message']})"}
    return found


def _checks(obj: Mapping[str, Any]) -> Rollout:
    spec, status = _dig(obj, 'spec'), _dig(obj, 'status')
    if _count(_dig(obj, 'metadata').get('generation')) > _count(status.get('observedGeneration')):
        return {'status': 'Progressing', 'message': 'waiting for the spec update to be observed'}
    progressing = next((condition for condition in _dicts(status.get('conditions'))
                        if condition.get('type') == 'Progressing'), None)
    if progressing is not None and progressing.get('reason') == TIMED_OUT:
        detail = progressing.get('message')
        reason = f': {detail}' if isinstance(detail, str) and detail else ''
        return {'status': 'Failed', 'message': f'exceeded its progress deadline{reason}'}
    wanted = _count(spec.get('replicas'), default=1)
    replicas, updated = _count(status.get('replicas')), _count(status.get('updatedReplicas'))
    available = _count(status.get('availableReplicas'))
    if updated < wanted:
        return {'status': 'Progressing', 'message': f'{updated} of {wanted} new replicas updated'}
    if replicas > updated:
        return {'status': 'Progressing', 'message': f'{replicas - updated} old replicas pending termination'}
    if available < updated:
        return {'status': 'Progressing', 'message': f'{available} of {updated} updated replicas available'}
    return {'status': 'Complete', 'message': 'successfully rolled out'}


def _dig(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _count(value: Any, *, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
