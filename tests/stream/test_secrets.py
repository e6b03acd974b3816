"""
Secrets stay out of the stream on the path people really take: ``kubectl apply``.

``kubectl apply`` keeps the whole manifest, env values included, in the annotation
``kubectl.kubernetes.io/last-applied-configuration``, so redacting ``env[].value``
alone put every applied value on stdout (in ``object``, ``old`` and ``diff``).
Applied for real with kubectl on a real cluster; its writes replayed on the emulator.
"""
import json
import pathlib
import subprocess
from collections.abc import Callable
from typing import Any

from deploywatch.model.objects import LAST_APPLIED, REDACTED
from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.deploy.manifests import kubectl
from tests.harness.clusters import Cluster
from tests.harness.operator import Event, of

VALUES = ('first-s3cr3t-value', 'rotated-s3cr3t-value')


def _apply(cluster: Cluster, manifest: dict[str, Any], tmp_path: pathlib.Path) -> None:
    """
    ``kubectl apply -f``. kubectl sends no bearer token over plain HTTP, which is all the
    emulated server speaks, so there the test writes what kubectl writes: the object
    with the manifest as its last-applied annotation (create, then a patch).
    """
    if cluster.emulated:
        namespace, name = manifest['metadata']['namespace'], manifest['metadata']['name']
        annotation = {LAST_APPLIED: json.dumps(manifest, separators=(',', ':')) + '\n'}
        body = {**manifest, 'metadata': {**manifest['metadata'], 'annotations': annotation}}
        if any(e['metadata']['name'] == name for e in cluster.truth({namespace}).values()):
            change = {'metadata': {'annotations': annotation}, 'spec': manifest['spec']}
            cluster.patch(namespace, name, change)
        else:
            cluster.create(body)
        return
    path = tmp_path / 'manifest.json'
    path.write_text(json.dumps(manifest))
    command = [str(kubectl()), '--kubeconfig', str(cluster.kubeconfig), 'apply', '-f', str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def _at_least(version: int) -> Callable[[Event], bool]:
    return lambda e: e['name'] == 'applied' and int(e['resourceVersion']) >= version


def test_kubectl_apply_puts_no_env_value_on_stdout(
        cluster: Cluster, start_operator: StartOperator, tmp_path: pathlib.Path) -> None:
    namespace = cluster.new_namespace()
    operator = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0.5'})
    manifest = deployment('applied', namespace=namespace)
    for field in ('uid', 'resourceVersion', 'creationTimestamp', 'generation'):
        manifest['metadata'].pop(field, None)
    manifest.pop('status', None)
    containers = manifest['spec']['template']['spec']['containers']
    cluster.create(deployment('sentinel', namespace=namespace))
    operator.wait_for(of('sentinel', 'ADDED'), what='the stream is live')

    for value in VALUES:
        containers[0]['env'] = [{'name': 'DATABASE_PASSWORD', 'value': value}]
        _apply(cluster, manifest, tmp_path)
        applied = cluster.get(namespace, 'applied')
        assert value in applied['metadata']['annotations'][LAST_APPLIED]  # the leak, at its source
        version = int(applied['metadata']['resourceVersion'])
        operator.wait_for(_at_least(version), what=f'the apply of {value}')
    operator.wait_for(of('applied', 'RESYNC'), what='a RESYNC of the applied one',
                      after=len(operator.events))
    cluster.delete(namespace, 'applied')
    operator.wait_for(of('applied', 'DELETED'), what='DELETED')

    printed = json.dumps(operator.events)
    assert not [value for value in VALUES if value in printed]
    last = operator.matching(of('applied'))[-1]['object']
    embedded = json.loads(last['metadata']['annotations'][LAST_APPLIED])  # still readable JSON
    assert embedded['spec']['template']['spec']['containers'][0]['env'] == [
        {'name': 'DATABASE_PASSWORD', 'value': REDACTED}]
