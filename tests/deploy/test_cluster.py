"""
deploywatch in a real cluster with exactly the manifests' RBAC (``DEPLOYWATCH_E2E_KUBECONFIG``).

Skipped without that variable, with the reason in pytest's summary, as tests/conftest.py
does for every scenario. With it, as the cluster's admin given by that kubeconfig:

1. the base's Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding are applied
   (``kubectl apply``), then the whole base with ``--dry-run=server``: every object is
   accepted, and the restricted PodSecurity admission has no warning for the pod;
2. a token for the ServiceAccount comes from the TokenRequest API (ten minutes), and a
   kubeconfig with it; the API server's own account of what that token may do
   (SelfSubjectRulesReview) is what the manifests grant, beyond what a ServiceAccount
   with no binding at all may do (asked the same way), and nothing else;
3. the operator runs with that identity, with the command of the image (from this
   venv), and prints a Deployment's lifecycle in a namespace of its own; a Deployment
   it watched carries nothing of deploywatch afterwards;
4. everything applied is deleted again.

A cluster where deploywatch is installed already (its Namespace exists) is not touched.

The prometheus-operator overlay is sent to the same API server with ``--dry-run=server
--validate=strict``, after its Namespace and, when the cluster has none, the Prometheus
Operator's ServiceMonitor CRD as ``tests/deploy/crds/`` stores it: the API server itself
validates the ServiceMonitor against the CRD (types, patterns, required fields; unknown
fields too from v1.25, where strict field validation is on; v1.24 prunes them) and accepts
it. What the test installed is removed again.
"""
import json
import os
import pathlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import yaml

from deploywatch.testing import factory
from tests.conftest import E2E_KUBECONFIG
from tests.deploy import containers, dockerfile, manifests, schemas
from tests.deploy.containers import Replica, named
from tests.deploy.rbac import Access, granted
from tests.harness import identity
from tests.harness.clusters import Cluster
from tests.harness.operator import eventually

IMAGE = dockerfile.parse(manifests.REPO / 'Dockerfile')
VENV = pathlib.Path(sys.executable).parent.parent
RBAC_KINDS = ('Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding')
TOKEN_SECONDS = 600

pytestmark = pytest.mark.e2e


class Admin:
    """The cluster as its admin: kubectl and the API client, both on the given kubeconfig."""

    def __init__(self, kubeconfig: pathlib.Path) -> None:
        self.kubeconfig = kubeconfig
        self.api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]

    def kubectl(self, *args: str, stdin: str = '') -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(manifests.kubectl()), '--kubeconfig', str(self.kubeconfig), *args],
                                input=stdin, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, f'kubectl {" ".join(args)}:\n{result.stderr}'
        return result

    def token(self, namespace: str, service_account: str) -> str:
        return identity.token(self.api, service_account, namespace=namespace, seconds=TOKEN_SECONDS)

    def kubeconfig_for(self, token: str, path: pathlib.Path) -> pathlib.Path:
        """The admin kubeconfig's current cluster, with the token as the only credential."""
        return identity.kubeconfig_for(self.kubeconfig, token, path)


def _rules(kubeconfig: pathlib.Path, namespace: str) -> set[Access]:
    """What the kubeconfig's identity may do in ``namespace``, as the API server says."""
    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    review = kubernetes.client.AuthorizationV1Api(api).create_self_subject_rules_review(
        kubernetes.client.V1SelfSubjectRulesReview(
            spec=kubernetes.client.V1SelfSubjectRulesReviewSpec(namespace=namespace)))
    assert review.status is not None
    rules: set[Access] = set()
    for rule in review.status.resource_rules:
        names: list[str | None] = [*rule.resource_names] if rule.resource_names else [None]
        for verb in rule.verbs:
            for group in rule.api_groups or ['']:
                for resource in rule.resources or []:
                    rules.update(Access(verb, group, resource, None, name) for name in names)
    return rules


@pytest.fixture
def admin() -> Iterator[Admin]:
    kubeconfig = os.environ.get(E2E_KUBECONFIG)
    if not kubeconfig:
        pytest.skip(f'no real cluster: set {E2E_KUBECONFIG} to a kubeconfig to install deploywatch\'s RBAC '
                    'there and run it with exactly that')
    yield Admin(pathlib.Path(kubeconfig))


def test_in_a_real_cluster_deploywatch_works_with_exactly_the_manifests_rbac(
        admin: Admin, tmp_path: pathlib.Path) -> None:
    docs = manifests.build('base')
    namespace, service_account = manifests.SERVICE_ACCOUNT
    existing = admin.kubectl('get', 'namespace', namespace, '--ignore-not-found', '-o', 'name').stdout
    if existing.strip():
        pytest.skip(f'deploywatch is installed in that cluster (namespace {namespace}): not touching it')
    rbac = yaml.safe_dump_all([doc for doc in docs if doc['kind'] in RBAC_KINDS])
    baseline_account = f'deploywatch-e2e-{uuid.uuid4().hex[:6]}'
    cluster = Cluster(admin.kubeconfig)
    try:
        admin.kubectl('apply', '-f', '-', stdin=rbac)
        dry_run = admin.kubectl('apply', '--dry-run=server', '-k', str(manifests.SHAPES['base']))
        assert 'PodSecurity' not in dry_run.stderr, dry_run.stderr

        token = admin.token(namespace, service_account)
        kubeconfig = admin.kubeconfig_for(token, tmp_path / 'serviceaccount.kubeconfig')
        admin.kubectl('create', 'serviceaccount', baseline_account, '-n', namespace)
        nobody_token = admin.token(namespace, baseline_account)
        nobody = admin.kubeconfig_for(nobody_token, tmp_path / 'nobody.kubeconfig')
        watched = cluster.new_namespace('dw-e2e')
        extra = _rules(kubeconfig, watched) - _rules(nobody, watched)
        assert extra == {Access(g.verb, g.group, g.resource, None, g.name) for g in granted(docs)}, extra

        container = manifests.container(docs)
        env = containers.environment(IMAGE, container, venv=VENV, pod='deploywatch-e2e',
                                     extra={'KUBECONFIG': str(kubeconfig), 'HOME': str(tmp_path)})
        replica = Replica(containers.on_free_port(containers.argv(IMAGE, container)), env=env,
                          stderr_path=tmp_path / 'e2e.stderr')
        try:
            cluster.create(factory.deployment('kept', namespace=watched))
            replica.wait_for(named('kept', 'ADDED'), what='a Deployment created while running', timeout=60)
            cluster.create(factory.deployment('gone', namespace=watched))
            cluster.patch(watched, 'gone', {'spec': {'replicas': 2}})
            cluster.delete(watched, 'gone')
            replica.wait_for(named('gone', 'DELETED'), what='its deletion', timeout=60)
        finally:
            code = replica.stop(timeout=30)
        assert code == 0, replica.stderr
        assert 'orbidden' not in replica.stderr, replica.stderr
        kept: dict[str, Any] = cluster.get(watched, 'kept')['metadata']
        assert not kept.get('finalizers'), kept
        assert not [key for key in kept.get('annotations') or {} if 'kopf' in key], kept
    finally:
        cluster.cleanup()
        admin.kubectl('delete', '-f', '-', '--ignore-not-found', '--wait=false', stdin=rbac)


def _established(admin: Admin, crd: str) -> bool:
    status = json.loads(admin.kubectl('get', 'crd', crd, '-o', 'json').stdout).get('status', {})
    conditions = status.get('conditions') or []
    return any(c.get('type') == 'Established' and c.get('status') == 'True' for c in conditions)


def test_in_a_real_cluster_the_api_server_accepts_the_prometheus_operator_overlay(admin: Admin) -> None:
    docs = manifests.build('prometheus-operator')
    namespace = manifests.one(docs, 'Namespace', manifests.SERVICE_ACCOUNT[0])
    name = namespace['metadata']['name']
    found = admin.kubectl('get', 'namespace', name, '--ignore-not-found', '-o', 'json').stdout
    if found.strip() and 'deletionTimestamp' in json.loads(found)['metadata']:  # the test above's, going
        admin.kubectl('wait', '--for=delete', f'namespace/{name}', '--timeout=120s')
    elif found.strip():
        pytest.skip(f'deploywatch is installed in that cluster (namespace {name}): not touching it')
    (crd,) = [crd for crd in schemas.published() if crd['spec']['names']['kind'] == 'ServiceMonitor']
    crd_name = crd['metadata']['name']
    found = admin.kubectl('get', 'crd', crd_name, '--ignore-not-found', '-o', 'name').stdout
    installed_crd = not found.strip()  # installed by this test, so removed by it
    try:
        if installed_crd:
            admin.kubectl('create', '-f', str(schemas.CRDS / 'monitoring.coreos.com_servicemonitors.yaml'))
            # Not `kubectl wait --for=condition=Established`: right after the create, v1.28 has
            # no status.conditions yet, and kubectl wait fails on that instead of waiting (seen in CI).
            eventually(lambda: _established(admin, crd_name), what=f'crd/{crd_name} Established', timeout=60)
        admin.kubectl('apply', '-f', '-', stdin=yaml.safe_dump(namespace))
        dry_run = admin.kubectl('apply', '--dry-run=server', '--validate=strict', '-k',
                                str(manifests.SHAPES['prometheus-operator']))
        assert 'servicemonitor.monitoring.coreos.com/deploywatch created (server dry run)' in dry_run.stdout
        assert 'service/deploywatch-metrics created (server dry run)' in dry_run.stdout
        assert 'arning' not in dry_run.stderr, dry_run.stderr
    finally:
        admin.kubectl('delete', 'namespace', name, '--ignore-not-found')  # gone before the next test looks
        if installed_crd:
            admin.kubectl('delete', 'crd', crd_name, '--ignore-not-found', '--wait=false')
