"""
Every shape of the manifests, offline: it builds, it is valid Kubernetes, it is safe.

* ``kustomize build`` (kubectl's) of the base and of every overlay succeeds;
* every object validates against the Kubernetes OpenAPI schemas of the oldest and the
  newest version ``kubernetes-validate`` ships, strictly (an unknown or misspelt field
  fails), and each custom resource against its CRD's schema, as strictly: the
  ClusterKopfPeering against the CRD the ha overlay ships, the ServiceMonitor against the
  Prometheus Operator's published one (``tests/deploy/crds/``);
* the pod passes the "restricted" Pod Security Standard and runs read-only, as the
  image's user, with requests and limits and Kopf's liveness endpoint as its probe;
* the pod serves /metrics where its scrape annotations, its `metrics` port and the
  ServiceMonitor overlay's Service say, and the probe is timed for the stall bound;
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

from tests.deploy import dockerfile, manifests, pod_security, schemas
from tests.deploy.conftest import report
from tests.deploy.containers import IMAGE_LIVENESS, METRICS_PORT
from tests.deploy.rbac import granted

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
    shipped = [doc for doc in docs if doc['kind'] == 'CustomResourceDefinition']
    crds = schemas.by_kind(schemas.published() + shipped)
    for doc in docs:
        group = doc['apiVersion'].rpartition('/')[0]
        if (group, doc['kind']) in crds:
            try:
                schemas.validate(doc, crds[group, doc['kind']])
            except jsonschema.ValidationError as error:
                where = '.'.join(str(part) for part in error.absolute_path)
                pytest.fail(f"{shape}: {doc['kind']} {doc['metadata']['name']} is not valid for its CRD: "
                            f"{where}: {error.message}")
            continue
        for kubernetes in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, kubernetes, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = '.'.join(str(part) for part in error.path)
                pytest.fail(f"{shape}: {doc['kind']} {doc['metadata']['name']} is not valid Kubernetes "
                            f"{kubernetes}: {where}: {error.message}")
    custom = [doc for doc in docs if (doc['apiVersion'].rpartition('/')[0], doc['kind']) in crds]
    kinds = ', '.join(f"{doc['kind']}/{doc['metadata']['name']}" for doc in docs if doc not in custom)
    against_crds = ''.join(f"; {doc['kind']}/{doc['metadata']['name']} (strict) against its CRD"
                           for doc in custom)
    report(request.config, f'{shape}: kustomize build ok; valid (strict) against Kubernetes '
                           f'{" and ".join(KUBERNETES_VERSIONS)}: {kinds}{against_crds}')


def test_the_schema_validation_is_strict() -> None:
    """A misspelt field fails it: the validation above is not vacuous."""
    deployment = manifests.one(manifests.build('base'), 'Deployment', 'deploywatch')
    deployment['spec']['template']['spec']['containers'][0]['securityContext']['readOnlyRootFilesytem'] = True
    for kubernetes in KUBERNETES_VERSIONS:
        with pytest.raises(kubernetes_validate.ValidationError, match='readOnlyRootFilesytem'):
            kubernetes_validate.validate(deployment, kubernetes, strict=True)


def test_the_custom_resource_validation_is_strict_too() -> None:
    """A misspelt, misplaced or malformed ServiceMonitor field fails, as the API server would refuse it."""
    (crd,) = [crd for crd in schemas.published() if crd['spec']['names']['kind'] == 'ServiceMonitor']

    def monitor() -> Obj:
        return manifests.one(manifests.build('prometheus-operator'), 'ServiceMonitor', 'deploywatch')

    schemas.validate(monitor(), crd)
    misspelt, misplaced, malformed = monitor(), monitor(), monitor()
    misspelt['spec']['endpoints'][0]['intervall'] = '30s'
    misplaced['endpoints'] = misplaced['spec'].pop('endpoints')
    malformed['spec']['endpoints'][0]['interval'] = '30 seconds'
    for broken, error in ((misspelt, "'intervall' was unexpected"), (misplaced, "'endpoints' was unexpected"),
                          (malformed, "'30 seconds' does not match")):
        with pytest.raises(jsonschema.ValidationError, match=error):
            schemas.validate(broken, crd)


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


@pytest.mark.parametrize('shape', SHAPES)
def test_the_pod_serves_metrics_where_its_scrape_annotations_say(shape: str) -> None:
    docs = manifests.build(shape)
    container = manifests.container(docs)
    template = manifests.one(docs, 'Deployment', 'deploywatch')['spec']['template']
    env = {item['name']: item.get('value') for item in container['env']}
    ports = {port['name']: port['containerPort'] for port in container['ports']}
    assert int(env[METRICS_PORT]) == ports['metrics']
    assert ports['metrics'] != ports['liveness'], 'Kopf and prometheus_client each serve their own port'
    annotations = template['metadata']['annotations']
    assert annotations == {'prometheus.io/scrape': 'true', 'prometheus.io/port': str(ports['metrics']),
                           'prometheus.io/path': '/metrics'}


@pytest.mark.parametrize('shape', SHAPES)
def test_the_stall_bound_not_the_probe_decides_when_a_silent_watch_is_restarted(shape: str) -> None:
    """
    The probe's own patience (failures x period) is a third of the stall bound at most, and
    more than one failure: a stalled watch is restarted within about 4 minutes of its last
    event or BOOKMARK, and one slow answer restarts nothing.
    """
    container = manifests.container(manifests.build(shape))
    stall = float({item['name']: item.get('value') for item in container['env']}['DEPLOYWATCH_STALL_SECONDS'])
    probe = container['livenessProbe']
    assert probe['failureThreshold'] > 1
    patience = probe['failureThreshold'] * probe['periodSeconds']
    assert patience <= stall / 3, (patience, stall)
    kopf_cache = 10  # Kopf answers a probe from its last result for up to 10 s
    assert stall + kopf_cache + patience + probe['timeoutSeconds'] <= 4 * 60 + 15


def test_the_prometheus_operator_overlay_scrapes_the_pods_metrics_port() -> None:
    """The ServiceMonitor selects the Service, whose port is the pod's `metrics`, at the annotated path."""
    docs = manifests.build('prometheus-operator')
    service = manifests.one(docs, 'Service', 'deploywatch-metrics')
    monitor = manifests.one(docs, 'ServiceMonitor', 'deploywatch')
    template = manifests.one(docs, 'Deployment', 'deploywatch')['spec']['template']
    namespace = manifests.SERVICE_ACCOUNT[0]
    assert service['metadata']['namespace'] == monitor['metadata']['namespace'] == namespace
    assert service['spec']['selector'].items() <= template['metadata']['labels'].items()
    assert monitor['spec']['selector']['matchLabels'].items() <= service['metadata']['labels'].items()
    assert 'namespaceSelector' not in monitor['spec'], 'the default: its own namespace, the Service\'s'
    (port,) = service['spec']['ports']
    (endpoint,) = monitor['spec']['endpoints']
    assert endpoint['port'] == port['name'] and port['targetPort'] == 'metrics'
    metrics = [p for p in manifests.container(docs)['ports'] if p['name'] == 'metrics']
    assert [port['port']] == [p['containerPort'] for p in metrics]
    assert endpoint['path'] == template['metadata']['annotations']['prometheus.io/path']
    # Nothing else changes: the same pod, the same RBAC as the base.
    base = manifests.build('base')
    deployment = manifests.one(docs, 'Deployment', 'deploywatch')
    assert deployment == manifests.one(base, 'Deployment', 'deploywatch')
    assert granted(docs) == granted(base)
    assert {doc['kind'] for doc in docs} - {doc['kind'] for doc in base} == {'Service', 'ServiceMonitor'}


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
