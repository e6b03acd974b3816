"""
The emulated API server's storage: objects, resourceVersions and the change history.

It plays etcd plus the apiserver's watch cache, with the semantics clients
depend on:

* one cluster-wide resourceVersion, increasing by one on every write, and a
  write that changes nothing is not a write (no new version, no event);
* a history of changes from which watches resume, and from which a paginated
  LIST is served as a consistent snapshot; a resourceVersion older than the
  history answers ``410 Expired`` (``compact()`` drops the history on purpose).
  etcd and the apiserver's watch cache forget at different times: with
  ``compact(keep_watch_cache=True)``, exact LISTs and continue tokens of older
  versions are 410 while watches from them are still served
  (``list-too-old-410.json`` and ``watch-compacted-but-cached.json``, both at
  the same version);
* LIST pages as etcd3 cuts them: ordered by storage key, a continue token that
  is base64url (unpadded) compact JSON ``{"v","rv","start"}`` with the key
  relative to the list's prefix (``list-page1.json``), and
  ``remainingItemCount`` only when no selector filters the list;
* deletion as kube-apiserver does it: an object without finalizers disappears
  at once with one DELETED event; one with finalizers (or a foreground delete,
  which adds ``foregroundDeletion``) only gets ``deletionTimestamp`` and a new
  generation (MODIFIED), and disappears when the last finalizer is removed.
  The DELETED event then carries the object as it was stored before that last
  update, with the deletion's resourceVersion (as ``watch-stream.json`` shows),
  while the update itself answers the object as updated, at the version it
  was updated from (``patch-remove-finalizer.json``);
* a ``metadata.resourceVersion`` in a PUT body or in a patch is a precondition
  (409 Conflict when it is not the stored one), as the garbage collector's
  finalizer-removing merge patches rely on.

All methods are synchronous and run on the server's event loop, so a watch can
take its backlog and subscribe to new changes atomically.
"""
import base64
import collections
import copy
import dataclasses
import datetime
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from deploywatch.testing import fields, kinds, labels, patching, versions
from deploywatch.testing.errors import ApiError
from deploywatch.testing.kinds import Obj, ResourceType

Key = tuple[str, str]  # (namespace or '', name)


@dataclasses.dataclass(frozen=True)
class Change:
    """One write, as the watch cache remembers it."""
    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: ResourceType
    key: Key
    obj: Obj  # what the watch event carries
    previous: Obj | None  # the stored object before the write (None for a create)


Subscriber = Callable[[Change], None]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


class Store:
    def __init__(self, *, first_resource_version: int = 1000, history_limit: int = 100_000,
                 version: versions.KubeVersion = versions.DEFAULT) -> None:
        self.version = version
        self.clock: Callable[[], str] = now
        """Where timestamps come from (creation, deletion, managedFields); a replay sets recorded times."""
        self._objects: dict[ResourceType, dict[Key, Obj]] = {r: {} for r in kinds.ALL}
        self._history: collections.deque[Change] = collections.deque()
        self._history_limit = history_limit
        self._oldest = first_resource_version  # a watch may resume from here or later
        self._compacted = first_resource_version  # etcd: an exact LIST may read from here or later
        self.resource_version = first_resource_version
        self._last_change: dict[ResourceType, int] = {}  # per resource type, kept across compactions
        self._caught_up: dict[ResourceType, int] = {}  # per resource type: refresh_watch_cache's version
        self._subscribers: list[Subscriber] = []

    # -- reading ---------------------------------------------------------------------------

    def get(self, resource: ResourceType, namespace: str, name: str) -> Obj:
        obj = self._objects[resource].get((namespace, name))
        if obj is None:
            raise ApiError.not_found(resource, name)
        return copy.deepcopy(obj)

    def list_objects(
            self,
            resource: ResourceType,
            namespace: str | None,
            *,
            selector: labels.Selector,
            resource_version: str | None = None,
            match: str | None = None,
            limit: int | None = None,
            continue_token: str | None = None,
    ) -> Obj:
        """A LIST response body: items without kind/apiVersion, as recorded in ``list-*.json``."""
        start = ''
        if continue_token:
            at, start = _decode_continue(continue_token)
            if at < self._readable:
                raise ApiError.expired_continue()
        elif resource_version and match == 'Exact':
            at = _parse_version(resource_version)
            if at < self._readable:
                raise ApiError.expired_list()
        else:
            at = self.resource_version  # "", "0" and NotOlderThan all get the latest state
        snapshot = self._snapshot(resource, at)
        # Ordered and cut as etcd keys are: by the key after the list's prefix, from the token's start.
        keys = sorted((_relative_key(key, namespace), key) for key in snapshot
                      if (namespace is None or key[0] == namespace) and selector.matches(snapshot[key]))
        keys = [(relative, key) for relative, key in keys if relative >= start]
        page = keys[:limit] if limit else keys
        metadata: Obj = {'resourceVersion': str(at)}
        if limit and len(keys) > limit:
            metadata['continue'] = _encode_continue(at, page[-1][0] + '\x00')  # just after the last key
            if not selector.requirements:  # etcd counts keys, not matches: no count when filtering
                metadata['remainingItemCount'] = len(keys) - limit
        items = []
        for _, key in page:
            item = copy.deepcopy(snapshot[key])
            item.pop('kind', None)
            item.pop('apiVersion', None)
            items.append(item)
        return {'kind': f'{resource.kind}List', 'apiVersion': resource.api_version,
                'metadata': metadata, 'items': items}

    def changes_since(self, resource_version: int) -> list[Change]:
        """Every change after a version, or 410 if the history no longer reaches back there."""
        if resource_version < self._oldest:
            raise ApiError.expired_watch(resource_version, self._oldest)
        return [change for change in self._history if change.resource_version > resource_version]

    def current(self, resource: ResourceType) -> Iterator[Obj]:
        for key in sorted(self._objects[resource]):
            yield self._objects[resource][key]

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def compact(self, *, keep_watch_cache: bool = False) -> None:
        """Compact etcd at the current version and, unless told otherwise, empty the watch cache.

        Exact LISTs and continue tokens of older versions answer 410 from now on
        (``list-too-old-410.json``); so do watches from them, unless the watch cache
        is kept, which still serves them (``watch-compacted-but-cached.json``).
        """
        self._compacted = self.resource_version
        if not keep_watch_cache:
            self._history.clear()
            self._oldest = self.resource_version

    @property
    def oldest(self) -> int:
        """The oldest version a watch can start from."""
        return self._oldest

    @property
    def _readable(self) -> int:
        """The oldest version a LIST can be served at: etcd's compaction, and the history's reach."""
        return max(self._compacted, self._oldest)

    # -- writing ---------------------------------------------------------------------------

    def create(self, resource: ResourceType, namespace: str, body: Obj, *, manager: str) -> Obj:
        obj = copy.deepcopy(body)
        if not isinstance(obj.get('metadata'), dict):
            obj['metadata'] = {}
        metadata = obj['metadata']
        if not metadata.get('name') and metadata.get('generateName'):
            metadata['name'] = metadata['generateName'] + uuid.uuid4().hex[:5]
        name = metadata.get('name')
        if not name:
            raise ApiError.unprocessable(
                f'{resource.kind}.{resource.group or "core"} "" is invalid: metadata.name: '
                'Required value: name or generateName is required')
        if resource.namespaced:
            if ('', namespace) not in self._objects[kinds.NAMESPACES]:
                raise ApiError.not_found(kinds.NAMESPACES, namespace)
            metadata['namespace'] = namespace
        else:
            namespace = ''
        if (namespace, name) in self._objects[resource]:
            raise ApiError.already_exists(resource, name)
        obj['kind'], obj['apiVersion'] = resource.kind, resource.api_version
        for field in ('resourceVersion', 'deletionTimestamp', 'deletionGracePeriodSeconds'):
            metadata.pop(field, None)
        metadata['uid'] = str(uuid.uuid4())
        metadata['creationTimestamp'] = self.clock()
        metadata.pop('managedFields', None)
        kinds.prepare_create(resource, obj, version=self.version)
        self._record_manager(kinds.empty(resource, version=self.version), obj, manager, subresource=None)
        return self._write(resource, (namespace, name), obj, previous=None)

    def inject(self, resource: ResourceType, namespace: str, obj: Obj) -> Obj:
        """
        Store an object as given, skipping validation and defaulting: a hostile object.

        A real API server validates Deployments, so a watcher only meets odd ones from
        buggy aggregated APIs, conversion webhooks or etcd edited by hand; the robustness
        tests need them anyway. Only the identity the store itself needs is filled in.
        """
        stored = copy.deepcopy(obj)
        metadata = stored.setdefault('metadata', {})
        metadata.setdefault('uid', str(uuid.uuid4()))
        metadata['namespace'] = namespace
        key = (namespace, metadata['name'])
        previous = self._objects[resource].get(key)
        return self._write(resource, key, stored, previous=previous)

    def update(self, resource: ResourceType, namespace: str, name: str, body: Obj, *,
               manager: str, subresource: str | None = None) -> Obj:
        key = (namespace if resource.namespaced else '', name)
        old = self._objects[resource].get(key)
        if old is None:
            raise ApiError.not_found(resource, name)
        new = copy.deepcopy(body)
        if not isinstance(new.get('metadata'), dict):
            new['metadata'] = {}
        wanted_version = new['metadata'].get('resourceVersion')
        if wanted_version and wanted_version != old['metadata']['resourceVersion']:
            raise ApiError.conflict(resource, name)
        # Fields that belong to the server, whatever the client sent.
        for field in ('uid', 'creationTimestamp', 'namespace', 'name', 'generation',
                      'deletionTimestamp', 'deletionGracePeriodSeconds', 'resourceVersion',
                      'managedFields'):
            if field in old['metadata']:
                new['metadata'][field] = copy.deepcopy(old['metadata'][field])
            else:
                new['metadata'].pop(field, None)
        new['kind'], new['apiVersion'] = resource.kind, resource.api_version
        if subresource == 'status':
            kinds.prepare_status_update(resource, new, old, version=self.version)
        else:
            kinds.prepare_update(resource, new, old, version=self.version)
        if new == old:
            return copy.deepcopy(old)  # a no-op write: no new version, no event
        self._record_manager(old, new, manager, subresource=subresource)
        return self._write(resource, key, new, previous=old)

    def _record_manager(self, old: Obj, new: Obj, manager: str, *, subresource: str | None) -> None:
        fields.record(old, new, manager=manager, subresource=subresource, time=self.clock(),
                      stamp_unchanged=self.version.every_write_stamps_its_manager)

    def scale(self, namespace: str, name: str) -> Obj:
        return kinds.scale(self.get(kinds.DEPLOYMENTS, namespace, name))

    def update_scale(self, namespace: str, name: str, body: Obj, *, manager: str) -> Obj:
        """A write of ``/scale``: only ``spec.replicas`` of the Deployment, answered as a Scale."""
        current = self.get(kinds.DEPLOYMENTS, namespace, name)
        metadata = body.get('metadata')
        wanted_version = metadata.get('resourceVersion') if isinstance(metadata, dict) else None
        if wanted_version and wanted_version != current['metadata']['resourceVersion']:
            raise ApiError.conflict(kinds.DEPLOYMENTS, name)
        spec = body.get('spec')
        replicas = spec.get('replicas', 0) if isinstance(spec, dict) else 0  # omitempty: absent is 0
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError.unprocessable(f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
                                         f'Invalid value: {json.dumps(replicas)}: must be greater than '
                                         'or equal to 0')
        current['spec']['replicas'] = replicas
        updated = self.update(kinds.DEPLOYMENTS, namespace, name, current, manager=manager,
                              subresource='scale')
        return kinds.scale(updated)

    def patch_scale(self, namespace: str, name: str, patch: Any, content_type: str, *, manager: str) -> Obj:
        patched = patching.apply(self.scale(namespace, name), patch, content_type)
        if not isinstance(patched, dict):
            raise ApiError.unprocessable('the patched object is not an object')
        return self.update_scale(namespace, name, patched, manager=manager)

    def patch(self, resource: ResourceType, namespace: str, name: str, patch: Any,
              content_type: str, *, manager: str, subresource: str | None = None) -> Obj:
        current = self.get(resource, namespace if resource.namespaced else '', name)
        patched = patching.apply(current, patch, content_type)
        if not isinstance(patched, dict):
            raise ApiError.unprocessable('the patched object is not an object')
        # A patch that leaves metadata.resourceVersion alone keeps the current one and cannot
        # conflict; one that sets it (as the garbage collector's do) makes it a precondition.
        return self.update(resource, namespace, name, patched, manager=manager, subresource=subresource)

    def delete(self, resource: ResourceType, namespace: str, name: str,
               options: Obj) -> tuple[Obj, bool]:
        """Delete or start deleting; returns the object and whether it is gone already."""
        key = (namespace if resource.namespaced else '', name)
        old = self._objects[resource].get(key)
        if old is None:
            raise ApiError.not_found(resource, name)
        preconditions = options.get('preconditions') or {}
        for field in ('uid', 'resourceVersion'):
            if preconditions.get(field) and preconditions[field] != old['metadata'].get(field):
                raise ApiError.conflict(resource, name)
        if resource is kinds.NAMESPACES:
            for contained in kinds.ALL:
                for content_key in [k for k in self._objects[contained] if k[0] == name]:
                    self._remove(contained, content_key)
        finalizers = list(old['metadata'].get('finalizers') or [])
        policy = options.get('propagationPolicy')
        extra = {'Foreground': 'foregroundDeletion', 'Orphan': 'orphan'}.get(policy or '')
        if extra and extra not in finalizers:
            finalizers.append(extra)
        if not finalizers:
            return self._remove(resource, key), True
        if 'deletionTimestamp' in old['metadata'] and finalizers == old['metadata'].get('finalizers'):
            return copy.deepcopy(old), False  # already being deleted: nothing changes
        new = copy.deepcopy(old)
        metadata = new['metadata']
        metadata['finalizers'] = finalizers
        if 'deletionTimestamp' not in metadata:
            metadata['deletionTimestamp'] = self.clock()
            metadata['deletionGracePeriodSeconds'] = 0
            if 'generation' in metadata:
                metadata['generation'] += 1
        return self._write(resource, key, new, previous=old), False

    # -- internals ---------------------------------------------------------------------------

    def _write(self, resource: ResourceType, key: Key, new: Obj, previous: Obj | None) -> Obj:
        metadata = new['metadata']
        if previous is not None and 'deletionTimestamp' in metadata and not metadata.get('finalizers'):
            # The last finalizer went away: the stored object is deleted (DELETED carries it), and
            # the update answers the object it was asked to write, as the registry's
            # deleteWithoutFinalizers does ("clients are expecting an updated object").
            self._remove(resource, key)
            return copy.deepcopy(new)
        self.resource_version += 1
        metadata['resourceVersion'] = str(self.resource_version)
        self._objects[resource][key] = new
        self._publish(Change(self.resource_version, 'ADDED' if previous is None else 'MODIFIED',
                             resource, key, copy.deepcopy(new), previous))
        return copy.deepcopy(new)

    def _remove(self, resource: ResourceType, key: Key) -> Obj:
        stored = self._objects[resource].pop(key)
        self.resource_version += 1
        final = copy.deepcopy(stored)
        final['metadata']['resourceVersion'] = str(self.resource_version)
        self._publish(Change(self.resource_version, 'DELETED', resource, key, final, stored))
        return copy.deepcopy(final)

    def last_change(self, resource: ResourceType) -> int:
        """The resourceVersion of the last write to an object of this type (0 before any)."""
        return self._last_change.get(resource, 0)

    def refresh_watch_cache(self, resource: ResourceType | None = None) -> None:
        """
        A progress notification from etcd: the watch cache of a resource type (or of every
        one) catches up with the store's resourceVersion, though none of its objects changed.

        Only on versions whose cacher follows the cluster (``KubeVersion.cacher_follows_the_cluster``:
        since v1.34, the apiserver's resource size estimator asks etcd for one about once a minute,
        and a LIST from the cache waits for one); elsewhere nothing happens.
        """
        if not self.version.cacher_follows_the_cluster:
            return
        for each in kinds.ALL if resource is None else (resource,):
            self._caught_up[each] = self.resource_version

    def watch_cache_version(self, resource: ResourceType) -> int:
        """The last resourceVersion the watch cache of a resource type processed, which its
        BOOKMARKs carry: its last change's, or a later one ``refresh_watch_cache`` brought."""
        return max(self.last_change(resource), self._caught_up.get(resource, 0))

    def _publish(self, change: Change) -> None:
        self._last_change[change.resource] = change.resource_version
        self._history.append(change)
        while len(self._history) > self._history_limit:
            self._oldest = self._history.popleft().resource_version
        for subscriber in list(self._subscribers):
            subscriber(change)

    def _snapshot(self, resource: ResourceType, at: int) -> dict[Key, Obj]:
        """The objects as they were at a version: today's, with later changes undone."""
        snapshot = dict(self._objects[resource])
        for change in reversed(self._history):
            if change.resource_version <= at:
                break
            if change.resource is not resource:
                continue
            if change.previous is None:
                snapshot.pop(change.key, None)
            else:
                snapshot[change.key] = change.previous
        return snapshot


def _relative_key(key: Key, namespace: str | None) -> str:
    """The storage key after a LIST's prefix: ``name`` within a namespace or for cluster-scoped kinds."""
    return f'{key[0]}/{key[1]}' if key[0] and namespace is None else key[1]


def _parse_version(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ApiError.bad_request(f'resourceVersion: Invalid value: "{text}"') from None


def _encode_continue(at: int, start: str) -> str:
    """As etcd3's ``encodeContinue``: base64url without padding of compact JSON."""
    token = json.dumps({'v': 'meta.k8s.io/v1', 'rv': at, 'start': start}, separators=(',', ':'))
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip('=')


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode((token + '=' * (-len(token) % 4)).encode()))
        if data.get('v') != 'meta.k8s.io/v1':
            raise ValueError(data.get('v'))
        return int(data['rv']), str(data['start'])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ApiError.bad_request('continue key is not valid') from None
