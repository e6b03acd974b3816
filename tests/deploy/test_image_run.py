"""
The image, built by buildah and run by podman as a pod runs it, against a real control plane.

With ``DEPLOYWATCH_E2E_KUBECONFIG`` (an admin kubeconfig; ``make e2e-local`` starts one), the
image is ``DEPLOYWATCH_E2E_IMAGE`` (``.ci/e2e-local`` builds it once, before the Kubernetes
versions run, and runs this file against v1.37 only: ``E2E_IMAGE_VERSIONS``) or, unset, the
one ``.ci/image`` (``make image``) builds now. Each container runs
as the shape's Deployment says, read from the built manifests, not from a copy here:

* its command and args (the image's ENTRYPOINT and CMD unless the manifest replaces them),
  its env (``POD_ID`` from ``metadata.name``: the container's name), its security context
  (``runAsUser``/``runAsGroup``, a read-only root with no tmpfs added, every capability
  dropped, no privilege escalation, the runtime's default seccomp profile), its ports;
* the in-cluster credentials a pod gets: ``KUBERNETES_SERVICE_HOST``/``_PORT`` and, at
  ``/var/run/secrets/kubernetes.io/serviceaccount``, a TokenRequest token of the manifests'
  ServiceAccount (bound by the manifests' RBAC, applied as they are), ``ca.crt`` and
  ``namespace``;
* a network namespace of its own, as a pod has (two replicas both listen on 8080); the
  API server of ``tests/cluster`` listens on the host's loopback only, which slirp4netns
  lets the container reach as 10.0.2.2, under the name the serving certificate carries
  (``kubernetes.default.svc``, as a pod's DNS would have it).

Checked: the v1 stream of Deployments made with kubectl (every line valid against the
shipped schema), ``/healthz`` 200 and ``/metrics`` through the container's published ports,
status 0 on SIGTERM within the pod's grace period (Kubernetes' default 30 s: the manifests
set none); and the HA overlay's two replicas, of which one prints and the other, paused,
takes over when the first stops.
"""
import json
import os
import pathlib
import re
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import kubernetes
import pytest
import yaml

from tests.conftest import E2E_KUBECONFIG
from tests.deploy import manifests
from tests.deploy.conftest import report
from tests.deploy.containers import Replica, free_port, named
from tests.deploy.test_cluster import Admin
from tests.harness.operator import eventually

pytestmark = pytest.mark.e2e

REPO = manifests.REPO
IMAGE_VARIABLE = 'DEPLOYWATCH_E2E_IMAGE'
SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'
API_SERVER_NAME = 'kubernetes.default.svc'  # in tests/cluster's serving certificate
HOST_LOOPBACK = '10.0.2.2'  # the host's 127.0.0.1, seen from slirp4netns
GRACE_SECONDS = 30  # terminationGracePeriodSeconds when a pod sets none
RBAC_KINDS = ('Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding')
PEERING_CRD = 'clusterkopfpeerings.kopf.dev'


@dataclass(frozen=True)
class Image:
    reference: str
    environment: dict[str, str]  # for podman: the storage and configuration .ci/image uses
    size: int = 0

    def podman(self, *args: str, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(['podman', *args], env={**os.environ, **self.environment},
                                capture_output=True, text=True, timeout=timeout, check=False)
        assert not check or result.returncode == 0, f'podman {" ".join(args)}:\n{result.stderr}'
        return result


@pytest.fixture(scope='session')
def image() -> Image:
    if not os.environ.get(E2E_KUBECONFIG):
        pytest.skip(f'no real cluster: set {E2E_KUBECONFIG} to run the image against it')
    reference = os.environ.get(IMAGE_VARIABLE)
    if not reference:  # make e2e by hand: build it now (cached layers: a minute or so)
        built = subprocess.run([str(REPO / '.ci' / 'image')], capture_output=True, text=True,
                               timeout=1800, check=False)
        assert built.returncode == 0, built.stderr[-5000:]
        reference = built.stdout.split()[-1]
    lines = subprocess.run([str(REPO / '.ci' / 'image'), 'env'], capture_output=True, text=True,
                           timeout=60, check=True).stdout.split()
    found = Image(reference, dict(line.split('=', 1) for line in lines))
    size = int(found.podman('image', 'inspect', '--format', '{{.Size}}', reference).stdout)
    return Image(reference, found.environment, size)


@pytest.fixture
def admin() -> Admin:
    kubeconfig = os.environ.get(E2E_KUBECONFIG)
    if not kubeconfig:
        pytest.skip(f'no real cluster: set {E2E_KUBECONFIG} to run the image against it')
    return Admin(pathlib.Path(kubeconfig))


@dataclass
class Pod:
    """One replica's container spec, from a built shape, as podman arguments."""

    name: str
    container: dict[str, Any]
    pod_spec: dict[str, Any]

    def env(self) -> list[str]:
        flags = []
        for item in self.container.get('env', []):
            if 'value' in item:
                flags += ['--env', f'{item["name"]}={item["value"]}']
            elif item.get('valueFrom', {}).get('fieldRef', {}).get('fieldPath') == 'metadata.name':
                flags += ['--env', f'{item["name"]}={self.name}']
            else:
                raise AssertionError(f'no emulation for env {item}')
        return flags

    def security(self) -> list[str]:
        """The pod's and the container's securityContext; an unknown field fails the test."""
        pod, own = dict(self.pod_spec.get('securityContext', {})), dict(self.container['securityContext'])
        assert pod.pop('runAsNonRoot') is True and pod.pop('seccompProfile') == {'type': 'RuntimeDefault'}
        flags = ['--user', f'{pod.pop("runAsUser")}:{pod.pop("runAsGroup")}']
        assert pod == {}, f'no emulation for the pod securityContext {pod}'
        if own.pop('readOnlyRootFilesystem'):
            flags += ['--read-only', '--read-only-tmpfs=false']  # no /tmp, /run tmpfs: a pod has none
        if own.pop('allowPrivilegeEscalation') is False:
            flags += ['--security-opt', 'no-new-privileges']
        assert own.pop('capabilities') == {'drop': ['ALL']}
        assert own == {}, f'no emulation for the container securityContext {own}'
        return [*flags, '--cap-drop', 'all']  # seccomp: podman's default profile is the RuntimeDefault

    def command(self, image: Image, *, credentials: pathlib.Path, port: int,
                published: dict[str, int]) -> list[str]:
        entrypoint = (['--entrypoint', json.dumps(self.container['command'])]
                      if 'command' in self.container else [])
        args = self.container.get('args', [])
        ports = [flag for item in self.container.get('ports', [])
                 for flag in ('--publish', f'127.0.0.1:{published[item["name"]]}:{item["containerPort"]}')]
        return ['podman', 'run', '--rm', '--name', self.name, '--pull', 'never', '--hostname', self.name,
                '--network', 'slirp4netns:allow_host_loopback=true',
                '--add-host', f'{API_SERVER_NAME}:{HOST_LOOPBACK}', *ports,
                '--env', f'KUBERNETES_SERVICE_HOST={API_SERVER_NAME}',
                '--env', f'KUBERNETES_SERVICE_PORT={port}',
                '--volume', f'{credentials}:{SERVICE_ACCOUNT_DIR}:ro',
                *self.env(), *self.security(), *entrypoint, image.reference, *args]


class Containers:
    """Replicas run by podman; each one removed at the end whatever happened."""

    def __init__(self, image: Image, admin: Admin, workdir: pathlib.Path, shape: str) -> None:
        self.image, self.admin, self.workdir = image, admin, workdir
        self.docs = manifests.build(shape)
        self.started: list[tuple[Replica, dict[str, int]]] = []
        self.names: list[str] = []
        self.credentials = self._credentials()

    def _credentials(self) -> pathlib.Path:
        namespace, account = manifests.SERVICE_ACCOUNT
        config = yaml.safe_load(self.admin.kubeconfig.read_text())
        cluster = config['clusters'][0]['cluster']
        folder = self.workdir / 'serviceaccount'
        folder.mkdir(mode=0o755)
        folder.chmod(0o755)  # the container's user reads it; the mount hides the parents' modes
        ca = pathlib.Path(cluster['certificate-authority'])
        ca = ca if ca.is_absolute() else self.admin.kubeconfig.parent / ca
        for name, text in (('token', self.admin.token(namespace, account)), ('ca.crt', ca.read_text()),
                           ('namespace', namespace)):
            (folder / name).write_text(text)
            (folder / name).chmod(0o644)
        self.server = str(cluster['server'])
        return folder

    def start(self) -> tuple[Replica, dict[str, int]]:
        name = f'deploywatch-{uuid.uuid4().hex[:8]}'
        deployment = manifests.one(self.docs, 'Deployment', 'deploywatch')
        pod = Pod(name, manifests.container(self.docs), deployment['spec']['template']['spec'])
        published = {item['name']: free_port() for item in pod.container.get('ports', [])}
        port = int(re.sub(r'.*:(\d+)/?$', r'\1', self.server))
        command = pod.command(self.image, credentials=self.credentials, port=port, published=published)
        self.names.append(name)
        replica = Replica(command, env={**os.environ, **self.image.environment},
                          stderr_path=self.workdir / f'{name}.stderr')
        self.started.append((replica, published))
        return replica, published

    def remove(self) -> None:
        for replica, _ in self.started:
            replica.stop(timeout=GRACE_SECONDS)
        for name in self.names:
            self.image.podman('rm', '--force', '--time', '0', '--ignore', name, check=False)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f'http://127.0.0.1:{port}{path}', timeout=5) as answer:
            return answer.status, answer.read().decode()
    except OSError as error:
        return 0, str(error)


def _stop_within_grace(replica: Replica) -> tuple[int, float]:
    started = time.monotonic()
    code = replica.stop(timeout=GRACE_SECONDS)
    return code, time.monotonic() - started


def _clean(replica: Replica) -> None:
    for sign in ('Traceback', 'Read-only file system', 'Permission denied', 'orbidden'):
        assert sign not in replica.stderr, replica.stderr[-5000:]


@pytest.fixture
def installed(admin: Admin, request: pytest.FixtureRequest) -> Iterator[list[dict[str, Any]]]:
    """The shape's RBAC (and the HA overlay's peering CRD and object), applied; removed after."""
    shape: str = request.param
    docs = manifests.build(shape)
    namespace = manifests.SERVICE_ACCOUNT[0]
    found = admin.kubectl('get', 'namespace', namespace, '--ignore-not-found', '-o', 'json').stdout
    if found.strip() and 'deletionTimestamp' in json.loads(found)['metadata']:  # an earlier test's, going
        admin.kubectl('wait', '--for=delete', f'namespace/{namespace}', '--timeout=120s')
    elif found.strip():
        pytest.skip(f'deploywatch is installed in that cluster (namespace {namespace}): not touching it')
    rbac = [doc for doc in docs if doc['kind'] in RBAC_KINDS]
    crds = [doc for doc in docs if doc['kind'] == 'CustomResourceDefinition']
    peering = [doc for doc in docs if doc['kind'] == 'ClusterKopfPeering']
    created_crd = bool(crds) and not admin.kubectl('get', 'crd', PEERING_CRD, '--ignore-not-found',
                                                   '-o', 'name').stdout.strip()
    try:
        admin.kubectl('apply', '-f', '-', stdin=yaml.safe_dump_all(rbac))
        if crds:
            admin.kubectl('apply', '-f', '-', stdin=yaml.safe_dump_all(crds))
            admin.kubectl('wait', '--for=condition=Established', f'crd/{PEERING_CRD}', '--timeout=60s')
            existing = admin.kubectl('get', 'clusterkopfpeering', 'deploywatch', '--ignore-not-found',
                                     '-o', 'name').stdout
            if existing.strip():
                pytest.skip('a ClusterKopfPeering deploywatch exists already: its peers would lead')
            admin.kubectl('create', '-f', '-', stdin=yaml.safe_dump_all(peering))
        yield docs
    finally:
        if peering:
            admin.kubectl('delete', 'clusterkopfpeering', 'deploywatch', '--ignore-not-found')
        if created_crd:
            admin.kubectl('delete', 'crd', PEERING_CRD, '--ignore-not-found', '--wait=false')
        admin.kubectl('delete', '-f', '-', '--ignore-not-found', '--wait=false',
                      stdin=yaml.safe_dump_all(rbac))


@pytest.fixture
def watched(admin: Admin) -> Iterator[str]:
    namespace = f'dw-image-{uuid.uuid4().hex[:6]}'
    admin.kubectl('create', 'namespace', namespace)
    try:
        yield namespace
    finally:
        admin.kubectl('delete', 'namespace', namespace, '--ignore-not-found', '--wait=false')


@pytest.mark.parametrize('installed', ['base'], indirect=True)
@pytest.mark.usefixtures('installed')
def test_the_image_runs_as_the_manifests_pod_in_a_real_cluster(
        image: Image, admin: Admin, watched: str, tmp_path: pathlib.Path,
        request: pytest.FixtureRequest) -> None:
    containers = Containers(image, admin, tmp_path, 'base')
    try:
        admin.kubectl('create', 'deployment', 'before', '--image=registry.k8s.io/pause:3.10', '-n', watched)
        replica, ports = containers.start()
        replica.wait_for(named('before', 'ADDED'), what='a Deployment there at start', timeout=90)
        # As its user, with no privilege, on a read-only root (what the kubelet would ask of runc).
        inside = image.podman('exec', containers.names[-1], 'sh', '-c',
                              'id -u; id -g; grep -E "^(CapEff|NoNewPrivs)" /proc/1/status; touch /probe',
                              check=False)
        expected = ['65532', '65532', 'CapEff:', '0000000000000000', 'NoNewPrivs:', '1']
        assert inside.stdout.split() == expected, inside.stdout
        assert inside.returncode != 0 and 'Read-only file system' in inside.stderr, inside.stderr
        eventually(lambda: _get(ports['liveness'], '/healthz')[0] == 200, what='/healthz 200', timeout=30)
        admin.kubectl('create', 'deployment', 'made', '--image=registry.k8s.io/pause:3.10', '-n', watched)
        added = replica.wait_for(named('made', 'ADDED'), what='a Deployment made with kubectl', timeout=60)
        admin.kubectl('scale', 'deployment', 'made', '--replicas=3', '-n', watched)
        replica.wait_for(lambda e: e['name'] == 'made' and e['type'] == 'MODIFIED'
                         and e['summary'].get('replicas') == 3, what='its scaling', timeout=60)
        admin.kubectl('delete', 'deployment', 'made', '-n', watched)
        replica.wait_for(named('made', 'DELETED'), what='its deletion', timeout=60)
        assert added['apiVersion'] == 'deploywatch/v1' and added['namespace'] == watched, added
        status, text = _get(ports['metrics'], '/metrics')
        assert status == 200, text
        deleted = r'^deploywatch_events_total\{[^}]*type="DELETED"[^}]*\} [1-9]'
        assert re.search(deleted, text, re.MULTILINE), text
        code, took = _stop_within_grace(replica)
        assert code == 0, replica.stderr[-5000:]
        assert took < GRACE_SECONDS, took
        _clean(replica)
    finally:
        containers.remove()
    report(request.config, f'image {image.reference} ({image.size / 1e6:.0f} MB): run by podman '
                           f'as the base Deployment\'s pod against {containers.server}; '
                           f'{len(replica.events)} lines, /healthz 200, /metrics, '
                           f'SIGTERM -> 0 in {took:.1f} s')


def _peers(admin: Admin) -> set[str]:
    """The identities with a keep-alive in the peering object (through the API: polled)."""
    found = cast(dict[str, Any], kubernetes.client.CustomObjectsApi(admin.api).get_cluster_custom_object(
        'kopf.dev', 'v1', 'clusterkopfpeerings', 'deploywatch'))
    return set(found.get('status') or {})


@pytest.mark.parametrize('installed', ['ha'], indirect=True)
@pytest.mark.usefixtures('installed')
def test_two_replicas_of_the_ha_overlay_print_from_one(
        image: Image, admin: Admin, watched: str, tmp_path: pathlib.Path,
        request: pytest.FixtureRequest) -> None:
    containers = Containers(image, admin, tmp_path, 'ha')
    try:
        admin.kubectl('create', 'deployment', 'before', '--image=registry.k8s.io/pause:3.10', '-n', watched)
        first, _ = containers.start()
        first.wait_for(named('before', 'ADDED'), what='the first replica printing', timeout=90)
        second, _ = containers.start()
        # The second replica's keep-alive beside the first's: it has seen its older peer.
        eventually(lambda: set(containers.names) <= _peers(admin), what='both replicas in the peering object',
                   timeout=60)
        admin.kubectl('create', 'deployment', 'made', '--image=registry.k8s.io/pause:3.10', '-n', watched)
        first.wait_for(named('made', 'ADDED'), what='a Deployment made with kubectl, by the leader',
                       timeout=60)
        assert second.names() == [], 'the younger replica printed while the older one led'
        code, took = _stop_within_grace(first)
        assert code == 0 and took < GRACE_SECONDS, (code, took, first.stderr[-3000:])
        second.wait_for(named('made', 'ADDED'), what='the second replica taking over', timeout=90)
        assert 'Not paused any more' in second.stderr, second.stderr[-3000:]
        code, took = _stop_within_grace(second)
        assert code == 0 and took < GRACE_SECONDS, (code, took, second.stderr[-3000:])
        _clean(first)
        _clean(second)
    finally:
        containers.remove()
    report(request.config, 'image: two containers with the ha overlay\'s command: one printed, the other '
                           'took over when it stopped (status 0)')


def _normal(pin: str) -> str:
    """NAME==VERSION with the name normalized as PyPI does (PEP 503)."""
    name, version = pin.split('==')
    return f'{re.sub(r"[-_.]+", "-", name).lower()}=={version}'


def test_the_image_holds_the_locked_packages_and_the_operator_only(
        image: Image, request: pytest.FixtureRequest) -> None:
    """
    The venv holds exactly requirements.lock's packages at its versions (its build backend
    and pip removed) and deploywatch, without its emulated API server; the base's
    certificate bundle is Debian's, not this machine's that the build mounted for pip.
    """
    program = (
        'import importlib.metadata as m, json, pathlib, deploywatch; '
        'd = pathlib.Path(deploywatch.__file__).parent; '
        'print(json.dumps({"where": str(d), "testing": (d / "testing").exists(), '
        '"schema": (d / "schema" / "event-v1.json").is_file(), '
        '"packages": sorted(f"{x.metadata[\'Name\']}=={x.version}" for x in m.distributions()), '
        '"bundle": pathlib.Path("/etc/ssl/certs/ca-certificates.crt").read_text()}))')
    found = json.loads(image.podman('run', '--rm', '--network', 'none', '--read-only', '--pull', 'never',
                                    '--entrypoint', 'python', image.reference, '-c', program).stdout)
    assert found['where'] == '/opt/deploywatch/lib/python3.11/site-packages/deploywatch', found['where']
    assert found['testing'] is False and found['schema'] is True
    locked = {line.split()[0].lower() for line in (REPO / 'requirements.lock').read_text().splitlines()
              if re.match(r'^[A-Za-z0-9._-]+==', line)}
    normal = {_normal(package) for package in found['packages']}
    expected = {_normal(pin) for pin in locked if not pin.startswith('setuptools==')} | {'deploywatch==0.1.0'}
    assert normal == expected, normal ^ expected
    host = pathlib.Path('/etc/ssl/certs/ca-certificates.crt')
    if host.is_file():
        assert found['bundle'] != host.read_text(), 'the image carries this machine\'s certificate bundle'
    report(request.config, f'image: {len(normal)} Python packages: requirements.lock\'s and deploywatch')
