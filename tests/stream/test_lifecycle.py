"""
Behaviours 1-5 of the v1 stream, through the real operator process.

Each test runs against the emulated API server, and against a real cluster when
DEPLOYWATCH_E2E_KUBECONFIG is set (see tests/conftest.py). In a real cluster the
deployment controller writes status (and its revision annotation) whenever it likes,
before and after each change of the test: an event is found by the resourceVersion
the test's own write returned, never as "the next MODIFIED".
"""
from typing import Any

import jsonpatch

from deploywatch.model.objects import REDACTED
from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import Event, of


def paths(event: Event) -> set[str]:
    return {operation['path'] for operation in event['diff']}


def test_existing_deployments_are_printed_once_as_initial_added(
        cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    for name in ('alpha', 'beta', 'gamma'):
        cluster.create(deployment(name, namespace=namespace))

    operator = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0'})
    added = operator.wait_for_count(lambda e: e['type'] == 'ADDED', 3, what='three initial ADDED')

    assert sorted(e['name'] for e in added) == ['alpha', 'beta', 'gamma']
    assert all(e['initial'] is True for e in added)
    # A sentinel created afterwards proves the stream is live; nothing was printed twice meanwhile.
    cluster.create(deployment('sentinel', namespace=namespace))
    operator.wait_for(of('sentinel', 'ADDED'), what='sentinel ADDED')
    printed = operator.matching(lambda e: e['name'] in ('alpha', 'beta', 'gamma'))
    if cluster.emulated:
        assert len(printed) == 3
    else:  # the controller's status writes are changes of their own: MODIFIED, each version once
        assert [e['type'] for e in printed].count('ADDED') == 3
        assert {e['type'] for e in printed} <= {'ADDED', 'MODIFIED'}
        versions = [(e['uid'], e['resourceVersion']) for e in printed]
        assert len(versions) == len(set(versions)), versions


def test_created_deployment_is_added_and_not_initial(cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('existing', namespace=namespace))
    operator = start_operator(f'--namespace={namespace}')
    operator.wait_for(of('existing', 'ADDED', initial=True), what='initial ADDED')

    created = cluster.create(deployment('fresh', namespace=namespace, image='nginx:1.27'))

    event = operator.wait_for(of('fresh', 'ADDED'), what='ADDED of the new Deployment')
    assert event['initial'] is False
    assert event['uid'] == created['metadata']['uid']
    assert event['summary']['images'] == ['nginx:1.27']
    assert 'managedFields' not in event['object']['metadata']


def test_spec_label_and_annotation_changes_are_modified_with_old_and_diff(
        cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('web', namespace=namespace, replicas=3))
    operator = start_operator(f'--namespace={namespace}')
    operator.wait_for(of('web', 'ADDED'), what='ADDED')

    changes: list[tuple[dict[str, Any], set[str]]] = [
        ({'spec': {'replicas': 5}}, {'/spec/replicas'}),
        ({'spec': {'template': {'spec': {'containers': [{'name': 'app', 'image': 'nginx:1.27'}]}}}},
         {'/spec/template/spec/containers/0/image'}),
        ({'metadata': {'labels': {'tier': 'frontend'}}}, {'/metadata/labels/tier'}),
        ({'metadata': {'annotations': {'owner': 'team-a'}}}, {'/metadata/annotations'}),
    ]
    found = []
    for patch, expected_paths in changes:
        seen = len(operator.events)
        version = cluster.patch(namespace, 'web', patch)['metadata']['resourceVersion']
        event = operator.wait_for(of('web', 'MODIFIED', resourceVersion=version),
                                  what=f'MODIFIED for {patch}', after=seen)
        if cluster.emulated:  # nobody else writes: it is the very next line
            assert operator.events[seen] is event
        expected = expected_paths
        if expected == {'/metadata/annotations'} and 'annotations' in event['old']['metadata']:
            expected = {'/metadata/annotations/owner'}  # the controller's revision annotation came first
        assert expected <= paths(event), (patch, event['diff'])
        # The diff is a real RFC 6902 patch from old to object (checked by another implementation).
        patched = jsonpatch.apply_patch(event['old'], event['diff'])
        assert patched == _without_version(event['object'], event['old'])
        found.append(event)

    scale, image = found[:2]
    assert scale['old']['spec']['replicas'] == 3 and scale['object']['spec']['replicas'] == 5
    assert scale['summary']['replicas'] == 5
    assert image['old']['spec']['template']['spec']['containers'][0]['image'] == 'nginx:1.25'
    assert image['summary']['images'] == ['nginx:1.27']


def _without_version(obj: Event, old: Event) -> Event:
    """object with old's resourceVersion: the diff deliberately leaves the version out."""
    return {**obj, 'metadata': {**obj['metadata'], 'resourceVersion': old['metadata']['resourceVersion']}}


def test_status_only_change_is_modified(cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('api', namespace=namespace, replicas=1))
    operator = start_operator(f'--namespace={namespace}')
    operator.wait_for(of('api', 'ADDED'), what='ADDED')
    version = cluster.patch(namespace, 'api', {'spec': {'replicas': 2}})['metadata']['resourceVersion']
    scaled = operator.wait_for(of('api', 'MODIFIED', resourceVersion=version), what='the spec change')

    cluster.finish_rollout(namespace, 'api')  # in a real cluster, the deployment controller does it

    event = operator.wait_for(
        lambda e: of('api', 'MODIFIED')(e) and e['summary']['observedGeneration'] == 2,
        what='MODIFIED with the controller status', after=operator.events.index(scaled) + 1)
    changed = paths(event)
    assert changed and all(p.startswith(('/status', '/metadata/annotations')) for p in changed), changed
    assert event['summary']['generation'] == scaled['summary']['generation'] == 2  # status does not move it
    if cluster.emulated:  # a real cluster has more status updates in between, and pods that may not start
        assert event['old'] == scaled['object']
        assert event['summary']['readyReplicas'] == 2


def test_delete_prints_the_last_known_state_without_waiting_for_deploywatch(
        cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('doomed', namespace=namespace, replicas=2))
    operator = start_operator(f'--namespace={namespace}')
    operator.wait_for(of('doomed', 'ADDED'), what='ADDED')
    version = cluster.patch(namespace, 'doomed', {'spec': {'replicas': 4}})['metadata']['resourceVersion']
    modified = operator.wait_for(of('doomed', 'MODIFIED', resourceVersion=version), what='MODIFIED')

    assert not cluster.get(namespace, 'doomed')['metadata'].get('finalizers')  # none added by us
    cluster.delete(namespace, 'doomed')

    deleted = operator.wait_for(of('doomed', 'DELETED'), what='DELETED')
    assert deleted['object']['spec']['replicas'] == 4
    assert int(deleted['resourceVersion']) > int(modified['resourceVersion'])
    assert deleted['uid'] == modified['uid']
    assert not deleted['object']['metadata'].get('finalizers')


def test_foreground_and_finalizer_deletions_are_modified_then_deleted(
        cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    held = deployment('held', namespace=namespace)
    held['metadata']['finalizers'] = ['example.com/hold']
    cluster.create(held)
    cluster.create(deployment('fg', namespace=namespace))
    operator = start_operator(f'--namespace={namespace}')
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', 2, what='two ADDED')

    cluster.delete(namespace, 'held')
    terminating = operator.wait_for(lambda e: of('held', 'MODIFIED')(e) and _terminating(e),
                                    what='MODIFIED with deletionTimestamp')
    assert {'/metadata/deletionTimestamp'} <= paths(terminating)
    cluster.patch(namespace, 'held', {'metadata': {'finalizers': None}})
    assert operator.wait_for(of('held', 'DELETED'), what='DELETED after the finalizer went')['object']

    cluster.delete(namespace, 'fg', propagation='Foreground')
    operator.wait_for(of('fg', 'DELETED'), what='DELETED after foreground deletion')
    marked = operator.matching(lambda e: of('fg', 'MODIFIED')(e) and _terminating(e))
    assert marked and 'foregroundDeletion' in marked[0]['object']['metadata']['finalizers']


def _terminating(event: Event) -> bool:
    """The object is marked for deletion (the controller's status writes before it are not)."""
    return 'deletionTimestamp' in event['object']['metadata']


def test_env_values_are_redacted_everywhere_unless_disabled(
        cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('secretive', namespace=namespace))
    redacting = start_operator(f'--namespace={namespace}')
    plain = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_REDACT': 'false'})
    for operator in (redacting, plain):
        operator.wait_for(of('secretive', 'ADDED'), what='ADDED')

    version = cluster.patch(namespace, 'secretive', {'spec': {'template': {'spec': {'containers': [
        {'name': 'app', 'env': [{'name': 'DATABASE_PASSWORD', 'value': 'rotated-s3cr3t'}]}]}}}}
    )['metadata']['resourceVersion']
    rotated = of('secretive', 'MODIFIED', resourceVersion=version)

    event = redacting.wait_for(rotated, what='MODIFIED (redacting)')
    everything = str(redacting.events)
    assert 's3cr3t' not in everything
    env = {v['name']: v for v in event['object']['spec']['template']['spec']['containers'][0]['env']}
    assert env['DATABASE_PASSWORD']['value'] == REDACTED
    assert env['API_TOKEN'] == {'name': 'API_TOKEN',
                                'valueFrom': {'secretKeyRef': {'name': 'secretive-api', 'key': 'token'}}}

    event = plain.wait_for(rotated, what='MODIFIED (not redacting)')
    env = {v['name']: v for v in event['object']['spec']['template']['spec']['containers'][0]['env']}
    assert env['DATABASE_PASSWORD']['value'] == 'rotated-s3cr3t'
