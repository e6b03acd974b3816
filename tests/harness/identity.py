"""
Who the operator runs as against a real cluster: never the admin.

A real scenario runs the operator as a ServiceAccount bound to exactly the
ClusterRole of ``manifests/`` (plus the namespace-globs component's rules when a
scenario watches a glob), with a short-lived token from the TokenRequest API.
That works on any cluster the admin kubeconfig reaches, not only the loopback
one, and the audit log then names the operator as
``system:serviceaccount:<namespace>:<name>``.
"""
import json
import pathlib
from typing import Any, cast

import kubernetes
import yaml

MANIFESTS = pathlib.Path(__file__).resolve().parents[2] / 'manifests'
NAMESPACE = 'deploywatch-e2e'
TOKEN_SECONDS = 3600
ROLES = {
    'plain': (MANIFESTS / 'base' / 'rbac.yaml',),
    'globs': (MANIFESTS / 'base' / 'rbac.yaml', MANIFESTS / 'components' / 'namespace-globs' / 'rbac.yaml'),
    # The HA overlay's replicas: base rules plus list/watch on ClusterKopfPeerings, patch on deploywatch's.
    'ha': (MANIFESTS / 'base' / 'rbac.yaml', MANIFESTS / 'overlays' / 'ha' / 'peering.yaml'),
    'none': (),
}
# The globs' rules but for watch on namespaces (list stays): Kopf lists them at start, then may
# not follow them (issue 20, item 5: what the liveness probe must see).
UNWATCHED_NAMESPACES = 'globs-unwatched'
ROLES[UNWATCHED_NAMESPACES] = ROLES['globs']


def without_namespace_watch(verbs: list[str], resources: list[str]) -> list[str]:
    """A rule's verbs, less watch if the rule is about namespaces."""
    return [verb for verb in verbs if verb != 'watch'] if 'namespaces' in resources else verbs


def username(account: str) -> str:
    return f'system:serviceaccount:{NAMESPACE}:{account}'


def _rules(paths: tuple[pathlib.Path, ...]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get('kind') == 'ClusterRole':
                rules.extend(document.get('rules', []))
    return rules


def _ignore_conflict(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except kubernetes.client.ApiException as error:
        if error.status != 409:
            raise


def service_account(api: Any, *, role: str) -> str:
    """A ServiceAccount bound cluster-wide to the manifests' rules for ``role``; its name."""
    core, rbac = kubernetes.client.CoreV1Api(api), kubernetes.client.RbacAuthorizationV1Api(api)
    account = f'deploywatch-{role}'
    _ignore_conflict(core.create_namespace, {'metadata': {'name': NAMESPACE}})
    _ignore_conflict(core.create_namespaced_service_account, NAMESPACE, {'metadata': {'name': account}})
    rules = _rules(ROLES[role])
    if role == UNWATCHED_NAMESPACES:
        rules = [dict(rule, verbs=without_namespace_watch(rule['verbs'], rule['resources']))
                 for rule in rules]
    if rules:
        name = f'deploywatch-e2e-{role}'
        role_body: Any = {'metadata': {'name': name}, 'rules': rules}
        try:
            rbac.create_cluster_role(role_body)
        except kubernetes.client.ApiException as error:
            if error.status != 409:
                raise
            rbac.replace_cluster_role(name, role_body)
        _ignore_conflict(rbac.create_cluster_role_binding, {
            'metadata': {'name': name},
            'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'ClusterRole', 'name': name},
            'subjects': [{'kind': 'ServiceAccount', 'name': account, 'namespace': NAMESPACE}]})
    return account


def token(api: Any, account: str, *, namespace: str = NAMESPACE, seconds: int = TOKEN_SECONDS) -> str:
    """A token for the ServiceAccount from the TokenRequest API."""
    request = kubernetes.client.AuthenticationV1TokenRequest(
        spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds))
    core = kubernetes.client.CoreV1Api(api)
    answer = core.create_namespaced_service_account_token(account, namespace, request)
    assert answer.status is not None
    return cast(str, answer.status.token)


def kubeconfig_for(admin: pathlib.Path, token: str, path: pathlib.Path, *,
                   server: str | None = None) -> pathlib.Path:
    """The admin kubeconfig's cluster (or ``server`` instead), with the token as the only credential."""
    config = yaml.safe_load(admin.read_text())
    context = next(c['context'] for c in config['contexts'] if c['name'] == config['current-context'])
    cluster = dict(next(c['cluster'] for c in config['clusters'] if c['name'] == context['cluster']))
    if 'certificate-authority' in cluster:  # relative to the kubeconfig it came from
        cluster['certificate-authority'] = str(admin.parent / cluster['certificate-authority'])
    if server is not None:
        cluster['server'] = server
    path.write_text(json.dumps({
        'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'deploywatch',
        'clusters': [{'name': 'cluster', 'cluster': cluster}],
        'users': [{'name': 'deploywatch', 'user': {'token': token}}],
        'contexts': [{'name': 'deploywatch', 'context': {'cluster': 'cluster', 'user': 'deploywatch'}}],
    }))
    return path


def server_of(kubeconfig: pathlib.Path) -> str:
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c['context'] for c in config['contexts'] if c['name'] == config['current-context'])
    return str(next(c['cluster'] for c in config['clusters'] if c['name'] == context['cluster'])['server'])
