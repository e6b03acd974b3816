"""
A Deployment that leaves ``DEPLOYWATCH_LABEL_SELECTOR`` is one DELETED line, and what that line carries.

The API server sends it (``tests/emulator/recordings/v1.*/watch-selector.json``) as
DELETED with the state it had *before* the write that took it out (the labels that
matched) at the resourceVersion *of* that write: the line carries both as sent, so
a reader sees which version ended the Deployment's membership and what it last
looked like inside the selection. Coming back in is an ADDED of the new state,
not an initial one.
"""
from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import of


def test_leaving_the_selector_is_deleted_with_the_state_inside_at_the_version_of_the_change(
        cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('web', namespace=namespace, labels={'tier': 'front'}))
    operator = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_LABEL_SELECTOR': 'tier=front'})
    operator.wait_for(of('web', 'ADDED'), what='web, inside the selection')

    left = cluster.patch(namespace, 'web', {'metadata': {'labels': {'tier': 'back', 'left': 'yes'}}})
    deleted = operator.wait_for(of('web', 'DELETED'), what='web leaves the selection')
    back = cluster.patch(namespace, 'web', {'metadata': {'labels': {'tier': 'front'}}})
    added = operator.wait_for(of('web', 'ADDED'), what='web comes back', after=operator.events.index(deleted))

    assert deleted['resourceVersion'] == left['metadata']['resourceVersion']
    assert deleted['object']['metadata']['labels']['tier'] == 'front'
    assert 'left' not in deleted['object']['metadata']['labels']
    assert added['initial'] is False
    assert added['resourceVersion'] == back['metadata']['resourceVersion']
    assert added['object']['metadata']['labels'] == back['metadata']['labels']
