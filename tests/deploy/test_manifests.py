"""
Every shape of the manifests, offline: it builds, it is valid Kubernetes, it is safe.

* ``kustomize build`` (kubectl's) of the base and of every overlay succeeds;
* every object validates against the Kubernetes OpenAPI schemas of the oldest and the
  newest version ``kubernetes-validate`` ships, strictly (an unknown or misspelt field
  fails), and the ClusterKopfPeering against its CRD's schema;
* the pod passes the "restricted" Pod Security Standard and runs read-only, as the
  image's user, with requests and limits and Kopf's liveness endpoint as its probe;
* the manifests agree with the Dockerfile and pyproject.toml where they must;
* every RBAC rule carries a comment saying why it is there.
"""
import pathlib
import re
import tomllib
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.deploy import dockerfile, manifests, pod_security
from tests.deploy.conftest import report
from tests.deploy.containers import IMAGE_LIVENESS

KUBERNETES_VERSIONS = ('1.25.0', '1.37.0')  # the oldest and the newest schemas kubernetes-validate ships
IMAGE = dockerfile.parse(manifests.REPO / 'Dockerfile')
VERSION = tomllib.loads((manifests.REPO / 'pyproject.toml').read_text())['project']['version']
SHAPES = list(manifests.SHAPES)

Obj = dict[str, Any]


def _pod(docs: list[Obj]) -> Obj:
    pod: Obj = manifests.one(docs, 'Deployment', 'deploywatch')['spec']['template']['spec']
    return pod


@pytest.mark.parametrize('shape', SHAPES)
def test_every_object_is_valid_kubernetes(shape: str, request: pytest.FixtureRequest) -> None:
    docs = manifests.build(shape)
    crds = {(crd['spec']['group'], crd['spec']['names']['kind']): crd
            for crd in docs if crd['kind'] == 'CustomResourceDefinition'}
    for doc in docs:
        group = doc['apiVersion'].rpartition('/')[0]
        if (group, doc['kind']) in crds:
            (version,) = [v for v in crds[group, doc['kind']]['spec']['versions'] if v['storage']]
            jsonschema.validate(doc, version['schema']['openAPIV3Schema'])
            continue
        for kubernetes in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, kubernetes, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = '.'.join(str(part) for part in error.path)
                pytest.fail(f"{shape}: {doc['kind']} {doc['metadata']['name']} is not valid Kubernetes "
                            f"{kubernetes}: {where}: {error.message}")
    kinds = ', '.join(f"{doc['kind']}/{doc['metadata']['name']}" for doc in docs)
    report(request.config, f'{shape}: kustomize build ok; valid (strict) against Kubernetes '
                           f'{" and ".join(KUBERNETES_VERSIONS)}: {kinds}')


def test_the_schema_validation_is_strict() -> None:
    """A misspelt field fails it: the validation above is not vacuous."""
    deployment = manifests.one(manifests.build('base'), 'Deployment', 'deploywatch')
    deployment['spec']['template']['spec']['containers'][0]['securityContext']['readOnlyRootFilesytem'] = True
    for kubernetes in KUBERNETES_VERSIONS:
        with pytest.raises(kubernetes_validate.ValidationError, match='readOnlyRootFilesytem'):
            kubernetes_validate.validate(deployment, kubernetes, strict=True)


@pytest.mark.parametrize('shape', SHAPES)
def test_the_pod_meets_the_restricted_pod_security_standard(shape: str) -> None:
    docs = manifests.build(shape)
    pod = _pod(docs)
    assert pod_security.violations(pod) == []
    assert manifests.container(docs)['securityContext']['readOnlyRootFilesystem'] is True
    namespace = manifests.one(docs, 'Namespace', 'deploywatch')['metadata']['labels']
    assert namespace['pod-security.kubernetes.io/enforce'] == 'restricted'


def test_the_restricted_check_is_not_vacuous() -> None:
    assert pod_security.violations({'containers': [{'name': 'app'}]}) == [
        'app: allowPrivilegeEscalation is not false', 'app: runAsNonRoot is not true',
        'app: seccompProfile is not RuntimeDefault or Localhost', 'app: capabilities do not drop ALL']
    assert pod_security.violations({'hostNetwork': True, 'volumes': [{'name': 'h', 'hostPath': {}}],
                                    'containers': []}) == [
        'host namespaces: hostNetwork', "volume h: ['hostPath']"]


@pytest.mark.parametrize('shape', SHAPES)
def test_the_pod_runs_the_image_as_its_user_with_its_liveness_endpoint(shape: str) -> None:
    docs = manifests.build(shape)
    pod, container = _pod(docs), manifests.container(docs)
    assert (pod['securityContext']['runAsUser'], pod['securityContext']['runAsGroup']) == IMAGE.user
    assert container['image'] == f'deploywatch:{VERSION}', 'the image tag is the package version'
    assert pod['serviceAccountName'] == manifests.SERVICE_ACCOUNT[1]
    # The probe asks the endpoint the image's entrypoint opens.
    assert IMAGE_LIVENESS in IMAGE.entrypoint
    port = int(re.fullmatch(r'--liveness=http://0\.0\.0\.0:(\d+)(/.*)', IMAGE_LIVENESS).group(1))  # type: ignore[union-attr]
    probe = container['livenessProbe']['httpGet']
    assert probe['path'] == '/healthz'
    assert [p['containerPort'] for p in container['ports'] if p['name'] == probe['port']] == [port]
    resources = container['resources']
    assert set(resources['requests']) == set(resources['limits']) == {'cpu', 'memory'}
    # What the pod runs starts with the image's entrypoint, whether or not an overlay wraps it.
    command = ' '.join(container.get('command', []) + container.get('args', []))
    assert 'command' not in container or ' '.join(IMAGE.entrypoint) in command


def test_the_base_runs_one_replica_cluster_wide_and_never_two_at_once() -> None:
    docs = manifests.build('base')
    deployment = manifests.one(docs, 'Deployment', 'deploywatch')
    assert deployment['spec']['replicas'] == 1
    assert deployment['spec']['strategy'] == {'type': 'Recreate'}
    assert 'args' in manifests.container(docs) and manifests.container(docs)['args'] == IMAGE.cmd
    kinds = {doc['kind'] for doc in docs}
    assert kinds == {'Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Deployment'}


def test_the_namespaced_overlay_has_no_cluster_wide_access() -> None:
    docs = manifests.build('namespaced')
    assert [doc for doc in docs if doc['kind'] in ('ClusterRole', 'ClusterRoleBinding')] == []


def test_the_ha_overlay_runs_two_peering_replicas_of_distinct_priorities() -> None:
    docs = manifests.build('ha')
    deployment = manifests.one(docs, 'Deployment', 'deploywatch')
    assert deployment['spec']['replicas'] == 2
    assert deployment['spec']['strategy']['type'] == 'RollingUpdate'
    assert manifests.one(docs, 'PodDisruptionBudget', 'deploywatch')['spec']['minAvailable'] == 1
    script = manifests.container(docs)['args'][-1]
    peering_name = manifests.one(docs, 'ClusterKopfPeering')['metadata']['name']
    assert f'--peering={peering_name}' in script and '--all-namespaces' in script and '--priority=' in script
    crd = manifests.one(docs, 'CustomResourceDefinition', 'clusterkopfpeerings.kopf.dev')
    assert crd['spec']['scope'] == 'Cluster' and 'subresources' not in crd['spec']['versions'][0]


@pytest.mark.parametrize('shape', SHAPES)
def test_uninstalling_by_label_removes_everything_but_the_shared_peering_crd(shape: str) -> None:
    """docs/install.md uninstalls with `-l app.kubernetes.io/name=deploywatch`: that must find them all."""
    unlabelled = [f"{doc['kind']}/{doc['metadata']['name']}" for doc in manifests.build(shape)
                  if (doc['metadata'].get('labels') or {}).get('app.kubernetes.io/name') != 'deploywatch']
    assert unlabelled == (['CustomResourceDefinition/clusterkopfpeerings.kopf.dev'] if shape == 'ha' else [])


def test_every_rbac_rule_says_why_it_is_there() -> None:
    """A comment right above each rule of every Role and ClusterRole in the sources."""
    files = [path for path in sorted(manifests.MANIFESTS.rglob('*.yaml'))
             if re.search(r'^kind: (Cluster)?Role$', path.read_text(), re.MULTILINE)]
    assert files
    rules = 0
    for path in files:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if re.match(r'\s+- apiGroups:', line):
                rules += 1
                above = lines[number - 1].strip()
                assert above.startswith('#'), f'{_relative(path)}:{number + 1}: a rule without a comment'
    assert rules >= 5


def _relative(path: pathlib.Path) -> str:
    return str(path.relative_to(manifests.REPO))
