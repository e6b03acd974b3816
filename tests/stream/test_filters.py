"""Filters and size control: what is written changes, what is tracked does not."""
import pytest

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster, EmulatedCluster
from tests.harness.operator import of


def test_a_label_selector_is_applied_by_the_server(cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('front', namespace=namespace, labels={'tier': 'front'}))
    cluster.create(deployment('back', namespace=namespace, labels={'tier': 'back'}))
    operator = start_operator(f'--namespace={namespace}',
                              env={'DEPLOYWATCH_LABEL_SELECTOR': 'tier in (front,edge)'})
    operator.wait_for(of('front', 'ADDED'), what='the matching one')

    cluster.patch(namespace, 'back', {'spec': {'replicas': 2}})
    cluster.patch(namespace, 'back', {'metadata': {'labels': {'tier': 'edge'}}})  # now it matches
    cluster.patch(namespace, 'front', {'metadata': {'labels': {'tier': 'gone'}}})  # now it does not

    assert operator.wait_for(of('back', 'ADDED'), what='back enters the selection')['initial'] is False
    assert operator.wait_for(of('front', 'DELETED'), what='front leaves the selection')
    back = [e['type'] for e in operator.events if e['name'] == 'back']
    if isinstance(cluster, EmulatedCluster):
        assert back == ['ADDED']
        requests = cluster.server.server.log.by('deploywatch')
        # The LIST and every watch after it carry the selector.
        deployments = [r for r in requests if r.resource == 'deployments']
        assert deployments and all('labelSelector=tier' in r.query for r in deployments), deployments
        assert {r.verb for r in deployments} == {'list', 'watch'}
    else:  # then the deployment controller's status writes for the scale, which are changes of their own
        assert back[0] == 'ADDED' and set(back[1:]) <= {'MODIFIED'}, back


def test_types_prints_only_the_chosen_event_types(cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('a', namespace=namespace))
    operator = start_operator(f'--namespace={namespace}', env={
        'DEPLOYWATCH_TYPES': 'added,DELETED', 'DEPLOYWATCH_RESYNC_SECONDS': '0.2'})
    operator.wait_for(of('a', 'ADDED'), what='ADDED')

    cluster.patch(namespace, 'a', {'spec': {'replicas': 4}})
    cluster.finish_rollout(namespace, 'a')
    cluster.delete(namespace, 'a')

    deleted = operator.wait_for(of('a', 'DELETED'), what='DELETED')
    assert deleted['summary']['replicas'] == 4  # the change was tracked, just not printed
    assert {e['type'] for e in operator.events} == {'ADDED', 'DELETED'}


def test_ignore_status_drops_status_only_changes(cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('a', namespace=namespace))
    operator = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_IGNORE_STATUS': 'true'})
    operator.wait_for(of('a', 'ADDED'), what='ADDED')

    cluster.finish_rollout(namespace, 'a')
    cluster.patch(namespace, 'a', {'spec': {'replicas': 3}})

    modified = operator.wait_for(of('a', 'MODIFIED'), what='the spec change')
    assert any(op['path'] == '/spec/replicas' for op in modified['diff'])
    assert len(operator.matching(of('a', 'MODIFIED'))) == 1
    if isinstance(cluster, EmulatedCluster):  # the status written before is old's already
        assert modified['old']['status']['readyReplicas'] == 1


@pytest.mark.parametrize(('env', 'has_object', 'has_old'), [
    ({}, True, True),
    ({'DEPLOYWATCH_OLD': 'false'}, True, False),
    ({'DEPLOYWATCH_OBJECT': 'summary'}, False, False),
])
def test_size_control(cluster: Cluster, start_operator: StartOperator,
                      env: dict[str, str], has_object: bool, has_old: bool) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('a', namespace=namespace))
    operator = start_operator(f'--namespace={namespace}', env=env)
    added = operator.wait_for(of('a', 'ADDED'), what='ADDED')

    version = cluster.patch(namespace, 'a', {'spec': {'replicas': 2}})['metadata']['resourceVersion']

    modified = operator.wait_for(of('a', 'MODIFIED', resourceVersion=version), what='MODIFIED')
    assert ('object' in added, 'object' in modified, 'old' in modified) == (has_object, has_object, has_old)
    assert {'op': 'replace', 'path': '/spec/replicas', 'value': 2} in modified['diff']
    assert modified['summary']['replicas'] == 2
