"""
RBAC as the manifests grant it and as deploywatch uses it, in one comparable form.

A grant is what a (Cluster)Role bound to deploywatch's ServiceAccount allows; a use is
one request in the emulated API server's request log. Both become :class:`Access`
(verb, API group, resource, namespace, object name), so that "grants less" (a use no
grant covers: a 403 in a real cluster) and "grants more" (a grant no use needed: a
needless privilege) are two set differences.
"""
import dataclasses
import itertools
from collections.abc import Iterable

from deploywatch.testing import Rule
from deploywatch.testing.access import Request
from tests.deploy.manifests import SERVICE_ACCOUNT, Obj

NAMED_VERBS = frozenset({'get', 'patch', 'update', 'delete'})


@dataclasses.dataclass(frozen=True, order=True)
class Access:
    verb: str
    group: str
    resource: str
    namespace: str | None  # a grant: None is cluster-wide; a use: None is a cluster-wide request
    name: str | None = None  # a grant: resourceNames; a use: the object a named request is about

    def covers(self, use: 'Access') -> bool:
        return ((self.verb, self.group, self.resource) == (use.verb, use.group, use.resource)
                and self.namespace in (None, use.namespace) and self.name in (None, use.name))

    def __str__(self) -> str:
        where = f'in namespace {self.namespace}' if self.namespace else 'cluster-wide'
        named = f' named {self.name}' if self.name else ''
        return f'{self.verb} {self.resource}.{self.group or "core"} {where}{named}'


def granted(docs: list[Obj]) -> set[Access]:
    """Everything the shape's Roles and ClusterRoles allow deploywatch's ServiceAccount."""
    roles = {(doc['kind'], doc['metadata'].get('namespace'), doc['metadata']['name']): doc
             for doc in docs if doc['kind'] in ('Role', 'ClusterRole')}
    grants: set[Access] = set()
    for binding in (doc for doc in docs if doc['kind'] in ('RoleBinding', 'ClusterRoleBinding')):
        scope = binding['metadata'].get('namespace') if binding['kind'] == 'RoleBinding' else None
        if not any(_is_deploywatch(subject, scope) for subject in binding.get('subjects', [])):
            continue
        ref = binding['roleRef']
        role = roles.get((ref['kind'], scope if ref['kind'] == 'Role' else None, ref['name']))
        assert role is not None, f"{binding['metadata']['name']}: no {ref['kind']} {ref['name']}"
        for rule in role['rules']:
            assert '*' not in [*rule['verbs'], *rule['apiGroups'], *rule['resources']], f'a wildcard: {rule}'
            names: list[str | None] = list(rule.get('resourceNames') or [None])
            for verb, group, resource, name in itertools.product(rule['verbs'], rule['apiGroups'],
                                                                 rule['resources'], names):
                grants.add(Access(verb, group, resource, scope, name))
    return grants


def _is_deploywatch(subject: Obj, binding_namespace: str | None) -> bool:
    namespace, name = SERVICE_ACCOUNT
    return (subject['kind'] == 'ServiceAccount' and subject['name'] == name
            and subject.get('namespace', binding_namespace) == namespace)


def emulator_rules(grants: Iterable[Access]) -> tuple[Rule, ...]:
    """
    The grants as the emulated API server enforces rules.

    It knows no resourceNames, so a grant limited by name is enforced there for any
    name; :func:`problems` checks the names from the request log instead.
    """
    return tuple(Rule(verbs=frozenset({g.verb}), groups=frozenset({g.group}),
                      resources=frozenset({g.resource}),
                      namespaces=None if g.namespace is None else frozenset({g.namespace}))
                 for g in sorted(grants))


def used(requests: Iterable[Request]) -> set[Access]:
    """What the requests needed; discovery needs no grant (every authenticated user has it)."""
    return {Access(r.verb, r.group, r.resource, r.namespace, _name(r)) for r in requests if r.resource}


def _name(request: Request) -> str | None:
    if request.verb not in NAMED_VERBS:
        return None
    parts = request.path.strip('/').split('/')
    plural = request.resource.split('/')[0]
    index = len(parts) - 1 - parts[::-1].index(plural)
    return parts[index + 1]


def problems(grants: set[Access], uses: set[Access]) -> list[str]:
    """Uses no grant covers (it would break) and grants no use needed (needless privilege)."""
    return ([f'used but not granted: {use}' for use in sorted(uses) if not any(g.covers(use) for g in grants)]
            + [f'granted but never used: {grant}' for grant in sorted(grants)
               if not any(grant.covers(use) for use in uses)])
