"""
Authentication and RBAC of the emulated API server, and its request log.

Users are bearer tokens; each user has RBAC-style rules (verbs, API groups,
resources, optionally limited to namespaces). Whatever a rule does not allow is
a 403 with kube-apiserver's exact message, so a test can prove that
deploywatch works with exactly the permissions its manifests grant — and the
request log, which records every request with the verb RBAC saw, proves which
verbs it used (none of them writes).
"""
import dataclasses
import time

ANY = '*'
READ_VERBS = frozenset({'get', 'list', 'watch'})
WRITE_VERBS = frozenset({'create', 'update', 'patch', 'delete', 'deletecollection'})


@dataclasses.dataclass(frozen=True)
class Rule:
    verbs: frozenset[str]
    groups: frozenset[str]
    resources: frozenset[str]  # plural names, "deployments/status" for subresources
    namespaces: frozenset[str] | None = None  # None: cluster-wide (a ClusterRole binding)

    def allows(self, *, verb: str, group: str, resource: str, namespace: str | None) -> bool:
        return ((ANY in self.verbs or verb in self.verbs)
                and (ANY in self.groups or group in self.groups)
                and (ANY in self.resources or resource in self.resources)
                and (self.namespaces is None or (namespace is not None and namespace in self.namespaces)))


ADMIN = (Rule(frozenset({ANY}), frozenset({ANY}), frozenset({ANY})),)


@dataclasses.dataclass
class User:
    name: str
    token: str
    rules: tuple[Rule, ...]

    def allows(self, *, verb: str, group: str, resource: str, namespace: str | None) -> bool:
        return any(rule.allows(verb=verb, group=group, resource=resource, namespace=namespace)
                   for rule in self.rules)


@dataclasses.dataclass(frozen=True)
class Request:
    """One request as the audit log would show it."""
    time: float
    user: str
    verb: str  # the RBAC verb: get, list, watch, create, update, patch, delete, ...
    method: str
    path: str
    query: str
    group: str
    resource: str  # plural, with "/subresource" if any; "" for discovery
    namespace: str | None
    status: int

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS


@dataclasses.dataclass
class RequestLog:
    requests: list[Request] = dataclasses.field(default_factory=list)

    def add(self, **fields: object) -> None:
        self.requests.append(Request(time=time.time(), **fields))  # type: ignore[arg-type]

    def writes(self, *, user: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.is_write and (user is None or r.user == user)]

    def by(self, user: str) -> list[Request]:
        return [r for r in self.requests if r.user == user]
