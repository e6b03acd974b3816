"""
summary.rollout, changedBy and id through the real operator, on the emulator and a real control plane.

Against a real cluster the writes are kubectl's own (``.venv/bin/kubectl``), and the
deployment controller and the stand-in kubelet roll out by themselves. Against the
emulator the same writes go through the kubernetes client with the field manager
and subresource kubectl uses (kubectl sends no token over plain HTTP), and the test
plays the controller, writing through ``/status`` as ``kube-controller-manager``.
A change is found by the resourceVersion its write returned.
"""
import json
import pathlib
import subprocess
import sys
from typing import Any, cast

import kubernetes
import pytest

from deploywatch.testing import controller
from deploywatch.testing.factory import deployment
from deploywatch.testing.store import now
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import Event, OperatorProcess, eventually, of

KUBECTL = pathlib.Path(sys.executable).parent / 'kubectl'
ROLLOUT_WAIT = 60.0  # a real rollout: the controller, the stand-in kubelet (~1 s a pod), the controller again


class Kubectl:
    """kubectl's writes: kubectl itself on a real cluster; on the emulator, what kubectl would send."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(cluster.kubeconfig))
        self.apps = kubernetes.client.AppsV1Api(client)

    def _run(self, *args: str) -> dict[str, Any]:
        command = [str(KUBECTL), '--kubeconfig', str(self.cluster.kubeconfig), '-n', self.namespace, *args,
                   '-o', 'json']
        found: dict[str, Any] = json.loads(subprocess.run(command, capture_output=True, text=True, timeout=30,
                                                          check=True).stdout)
        return found

    def _patch(self, name: str, body: dict[str, Any], manager: str) -> dict[str, Any]:
        response: Any = self.apps.patch_namespaced_deployment(name, self.namespace, body,
                                                              field_manager=manager, _preload_content=False)
        found: dict[str, Any] = json.loads(response.data)
        return found

    def set_image(self, name: str, image: str) -> str:
        """The resourceVersion of the write (kubectl prints what the PATCH answered)."""
        if not self.cluster.emulated:
            found = self._run('set', 'image', f'deployment/{name}', f'app={image}')
        else:
            found = self._patch(name, {'spec': {'template': {'spec': {'containers': [
                {'name': 'app', 'image': image}]}}}}, 'kubectl-set')
        return str(found['metadata']['resourceVersion'])

    def scale(self, name: str, replicas: int) -> None:
        """
        No resourceVersion to return: ``kubectl scale -o json`` prints the Deployment as read
        after the write (the controller's writes may be in it already); find it by its diff.
        """
        if not self.cluster.emulated:
            self._run('scale', f'deployment/{name}', f'--replicas={replicas}')
            return
        self.apps.patch_namespaced_deployment_scale(name, self.namespace, {'spec': {'replicas': replicas}},
                                                    field_manager='kubectl')

    def pause(self, name: str) -> None:
        """Found by its diff too (spec.paused set)."""
        if not self.cluster.emulated:
            self._run('rollout', 'pause', f'deployment/{name}')
            return
        self._patch(name, {'spec': {'paused': True}}, 'kubectl-rollout')

    def roll_out(self, name: str, *, failed: bool = False) -> None:
        """Emulator only: what the deployment controller writes at the end (through /status, as it)."""
        if not self.cluster.emulated:
            return
        body = controller.rolled_out(self.cluster.get(self.namespace, name), time=now())
        if failed:
            body['status'].update({'updatedReplicas': 1, 'readyReplicas': 0, 'availableReplicas': 0,
                                   'unavailableReplicas': 1})
            body['status']['conditions'][1].update({
                'status': 'False', 'reason': 'ProgressDeadlineExceeded',
                'message': f'ReplicaSet "{name}-1" has timed out progressing.'})
        self.apps.replace_namespaced_deployment_status(name, self.namespace, cast(Any, body),
                                                       field_manager='kube-controller-manager')


def rollout_of(event: Event) -> str:
    return str(event['summary']['rollout']['status'])


def author(event: Event) -> tuple[str, str | None] | None:
    found = event.get('changedBy')
    return None if found is None else (found['manager'], found['subresource'])


def at(name: str, version: str) -> Any:
    return lambda event: event['name'] == name and event['resourceVersion'] == version


def changing(name: str, operation: dict[str, Any]) -> Any:
    """The MODIFIED of ``name`` whose diff holds this operation: the change only that write makes."""
    return lambda event: event['name'] == name and event['type'] == 'MODIFIED' and operation in event['diff']


def wait_rollout(operator: OperatorProcess, name: str, status: str, *, after: int) -> Event:
    return operator.wait_for(lambda e: e['name'] == name and rollout_of(e) == status,
                             what=f'{name} rollout {status}', after=after, timeout=ROLLOUT_WAIT)


def test_rollouts_progress_and_complete_and_each_change_names_its_author(
        cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    kubectl = Kubectl(cluster, namespace)
    cluster.create(deployment('marker', namespace=namespace, replicas=0))
    operator = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0'})
    operator.wait_for(of('marker', 'ADDED'), what='the listing')  # watching now: the create is seen
    cluster.create(deployment('web', namespace=namespace, image='nginx:1.25'))

    added = operator.wait_for(of('web', 'ADDED'), what='ADDED')
    assert rollout_of(added) == 'Progressing' and added['initial'] is False
    assert added['changedBy'] is not None  # the create, by its one manager
    kubectl.roll_out('web')
    done = wait_rollout(operator, 'web', 'Complete', after=0)
    assert author(done) == ('kube-controller-manager', 'status')

    mark = len(operator.events)
    version = kubectl.set_image('web', 'nginx:1.27')
    changed = operator.wait_for(at('web', version), what='the set image MODIFIED', after=mark)
    assert rollout_of(changed) == 'Progressing'
    assert author(changed) == ('kubectl-set', None)
    kubectl.roll_out('web')
    done = wait_rollout(operator, 'web', 'Complete', after=mark)
    assert done['summary']['images'] == ['nginx:1.27']

    mark = len(operator.events)
    kubectl.scale('web', 2)
    scaled = operator.wait_for(changing('web', {'op': 'replace', 'path': '/spec/replicas', 'value': 2}),
                               what='the scale MODIFIED', after=mark)
    assert author(scaled) == ('kubectl', 'scale') and scaled['summary']['replicas'] == 2
    kubectl.roll_out('web')
    wait_rollout(operator, 'web', 'Complete', after=mark)

    mark = len(operator.events)
    kubectl.pause('web')
    paused = operator.wait_for(changing('web', {'op': 'add', 'path': '/spec/paused', 'value': True}),
                               what='the pause MODIFIED', after=mark)
    assert rollout_of(paused) == 'Paused' and author(paused) == ('kubectl-rollout', None)

    # Every status-only change (the controller's) is the controller's; every id is unique.
    everything = operator.matching(of('web'))
    status_only = [e for e in everything if e['type'] == 'MODIFIED' and e['diff']
                   and all(op['path'].startswith('/status') for op in e['diff'])]
    assert status_only and {author(e) for e in status_only} == {('kube-controller-manager', 'status')}
    assert len({e['id'] for e in everything}) == len(everything)
    assert all(e['id'] == f"{e['uid']}:{e['resourceVersion']}:{e['type']}" for e in everything)


def test_a_rollout_that_never_becomes_ready_ends_failed(cluster: Cluster,
                                                       start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    kubectl = Kubectl(cluster, namespace)
    operator = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0'})
    body = deployment('stuck', namespace=namespace, image='registry.example/never-ready:1')
    body['spec']['progressDeadlineSeconds'] = 10
    cluster.create(body)
    operator.wait_for(of('stuck', 'ADDED'), what='ADDED')
    kubectl.roll_out('stuck', failed=True)

    failed = wait_rollout(operator, 'stuck', 'Failed', after=0)
    assert failed['summary']['rollout']['message'].startswith('exceeded its progress deadline')
    assert author(failed) == ('kube-controller-manager', 'status')
    assert failed['summary']['availableReplicas'] == 0


def test_terminating_pods_are_counted_where_the_server_counts_them(cluster: Cluster,
                                                                   start_operator: StartOperator) -> None:
    """
    ``summary.terminatingReplicas`` as the real deployment controller reports it: from v1.35 on
    (``DeploymentReplicaSetTerminatingReplicas``, beta) a rollout's old pods are counted while
    the stand-in kubelet takes its second to stop them, and left out of ``replicas``; v1.34
    does not count them, so the summary says ``null`` throughout, never a made-up 0.
    """
    if cluster.emulated:
        pytest.skip('the pods that terminate are the real controllers\' and the stand-in kubelet\'s')
    namespace = cluster.new_namespace()
    kubectl = Kubectl(cluster, namespace)
    operator = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0'})
    cluster.create(deployment('web', namespace=namespace, image='nginx:1.25', replicas=2))
    wait_rollout(operator, 'web', 'Complete', after=0)
    mark = len(operator.events)
    kubectl.set_image('web', 'nginx:1.27')
    operator.wait_for(lambda e: e['name'] == 'web' and rollout_of(e) == 'Complete'
                      and e['summary']['images'] == ['nginx:1.27']
                      and e['summary']['terminatingReplicas'] in (0, None),
                      what='the rollout complete, no pod terminating', after=mark, timeout=ROLLOUT_WAIT)
    counts = [e['summary']['terminatingReplicas'] for e in operator.matching(of('web'))]
    if cluster.minor >= 35:
        assert None not in counts and max(counts) >= 1, counts
        terminating = next(e for e in operator.events[mark:] if e['summary']['terminatingReplicas'])
        status = terminating['object']['status']
        assert terminating['summary']['terminatingReplicas'] == status['terminatingReplicas']
    else:
        assert counts and set(counts) == {None}, counts


def test_two_operators_print_the_same_ids(cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('listed', namespace=namespace, replicas=0))
    env = {'DEPLOYWATCH_RESYNC_SECONDS': '1'}
    first = start_operator(f'--namespace={namespace}', env=env)
    first.wait_for(of('listed', 'ADDED'), what='first: ADDED')
    second = start_operator(f'--namespace={namespace}', env=env)  # started later: its own listing
    second.wait_for(of('listed', 'ADDED'), what='second: ADDED')
    version = cluster.patch(namespace, 'listed', {'metadata': {'labels': {'tier': 'a'}}})['metadata'][
        'resourceVersion']
    both = (first, second)
    changed = [operator.wait_for(at('listed', version), what='the change') for operator in both]
    assert changed[0]['id'] == changed[1]['id'] == f"{changed[0]['uid']}:{version}:MODIFIED"

    def resyncs(operator: OperatorProcess) -> dict[str, Event]:
        return {e['id']: e for e in operator.matching(of('listed', 'RESYNC'))}

    # RESYNC rounds are wall-clock slots: both replicas print each round under the same id.
    eventually(lambda: len(resyncs(first).keys() & resyncs(second).keys()) >= 2, what='two rounds in common')
    for operator in both:
        printed = operator.matching(of('listed', 'RESYNC'))
        assert len({e['id'] for e in printed}) == len(printed)  # one id per round
    # Every change both printed, keyed by the event's own fields (never by its id), has one id on both.
    changes = [{(e['uid'], e['resourceVersion'], e['type']): e['id'] for e in operator.matching(of('listed'))
                if e['type'] != 'RESYNC'} for operator in both]
    common = changes[0].keys() & changes[1].keys()
    assert (changed[0]['uid'], version, 'MODIFIED') in common
    assert {key: changes[0][key] for key in common} == {key: changes[1][key] for key in common}
