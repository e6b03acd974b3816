"""
``metadata.managedFields`` as kube-apiserver keeps them for Update operations.

Every write names a manager (``?fieldManager=``, else the User-Agent up to its
first ``/``), and the apiserver records which fields each manager set
(structured-merge-diff's ``Updater.Update``). A watcher that reports who
changed what reads exactly this, so the emulator computes it the same way
instead of giving every writer the whole object:

* the write is compared with the stored object (for a create: with the empty
  object of the kind, which is why ``spec.strategy`` or ``spec.template.metadata``
  never carry a ``.`` of their own); the writer gains every field it added or
  changed and loses those it removed, and the other managers lose the fields it
  changed (an Update always wins);
* a manager left owning nothing has no entry; the writer's entry gets the
  write's time (on v1.24 only if its field set changed: ``versions``), except
  a write through ``/scale``, whose entry has no ``time`` at all (every version: ``v1.*/scale.json``);
* a field set is FieldsV1: ``f:<name>`` for struct and map members,
  ``k:{...}`` for items of lists keyed by merge keys (containers by name, ports by
  containerPort and protocol, ...), ``v:<value>`` for set-like lists
  (finalizers), ``.`` for a node that is owned itself and has owned children:
  one the write added; atomic values (``spec.selector``, other lists) are leaves;
* entries are ordered as the apiserver encodes them: by operation, by time in
  seconds (none first), then by manager, apiVersion and subresource.
"""
import json
from collections.abc import Iterator
from typing import Any

Obj = dict[str, Any]
Path = tuple[str, ...]

# List fields whose items are keyed (k8s.io/api's list-map keys); every other list is atomic.
LIST_KEYS = {
    'containers': ('name',), 'initContainers': ('name',), 'ephemeralContainers': ('name',),
    'env': ('name',), 'ports': ('containerPort', 'protocol'), 'volumeMounts': ('mountPath',),
    'volumeDevices': ('devicePath',), 'volumes': ('name',), 'imagePullSecrets': ('name',),
    'conditions': ('type',), 'hostAliases': ('ip',), 'ownerReferences': ('uid',),
}
SET_LISTS = frozenset({'finalizers'})
ATOMIC = frozenset({'selector'})  # LabelSelector is an atomic struct in apps/v1
# Metadata the apiserver sets itself: never part of a field set.
SERVER_METADATA = frozenset({'name', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp',
                             'managedFields', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'selfLink'})


class _Container:
    """The value of a node that has members: it is compared through them, never as a whole."""


CONTAINER = _Container()


def record(old: Obj, new: Obj, *, manager: str, subresource: str | None, time: str,
           stamp_unchanged: bool) -> None:
    """Set ``new``'s managedFields for a write by ``manager`` that turned ``old`` into ``new``.

    ``stamp_unchanged``: give the writer's entry the new time even when its field set is
    the same as before (v1.28 and later do, v1.24 does not: ``versions``).
    """
    before, after = nodes(old), nodes(new)
    added = after.keys() - before.keys()
    removed = before.keys() - after.keys()
    modified = {path for path in after.keys() & before.keys() if _modified(before[path], after[path])}
    changed = added | modified
    entries: list[Obj] = []
    mine: set[Path] = set()
    previous: Obj | None = None
    for entry in new['metadata'].get('managedFields') or []:
        owned = parse(entry.get('fieldsV1') or {})
        if (entry.get('manager'), entry.get('subresource'), entry.get('operation')) == (
                manager, subresource, 'Update'):
            mine, previous = owned, entry
            continue
        rest = owned - changed
        if rest:
            entries.append({**entry, 'fieldsV1': encode(rest)} if rest != owned else entry)
    kept = mine
    mine = (mine - removed) | changed
    if previous is not None and mine == kept and not stamp_unchanged:
        entries.append(previous)
    elif mine:
        entry = {'manager': manager, 'operation': 'Update', 'apiVersion': new['apiVersion']}
        if subresource != 'scale':
            entry['time'] = time
        entry.update({'fieldsType': 'FieldsV1', 'fieldsV1': encode(mine)})
        if subresource:
            entry['subresource'] = subresource
        entries.append(entry)
    entries.sort(key=_order)
    if entries:
        new['metadata']['managedFields'] = entries
    else:
        new['metadata'].pop('managedFields', None)


def _order(entry: Obj) -> tuple[str, str, str, str, str]:
    # RFC 3339 seconds sort as text; an entry without a time counts as the epoch, first.
    return (entry.get('operation', ''), entry.get('time') or '', entry.get('manager', ''),
            entry.get('apiVersion', ''), entry.get('subresource', ''))


def _modified(before: Any, after: Any) -> bool:
    if before is CONTAINER or after is CONTAINER:
        return False  # a map or list is changed through its members (also from or to null)
    return bool(before != after)


def nodes(obj: Obj) -> dict[Path, Any]:
    """Every node of an object that a field set can name, with its value (leaves) or CONTAINER."""
    found: dict[Path, Any] = {}
    for key, value in obj.items():
        if key in ('apiVersion', 'kind'):
            continue
        if key == 'metadata' and isinstance(value, dict):
            found[('f:metadata',)] = CONTAINER
            for name, child in value.items():
                if name not in SERVER_METADATA:
                    found.update(_walk(('f:metadata', f'f:{name}'), name, child))
        else:
            found.update(_walk((f'f:{key}',), key, value))
    return found


def _walk(path: Path, name: str, value: Any) -> Iterator[tuple[Path, Any]]:
    if isinstance(value, dict) and name not in ATOMIC:
        yield path, CONTAINER
        for key, child in value.items():
            yield from _walk((*path, f'f:{key}'), key, child)
    elif isinstance(value, list) and name in LIST_KEYS and all(isinstance(i, dict) for i in value):
        yield path, CONTAINER
        for item in value:
            key = {field: item[field] for field in LIST_KEYS[name] if field in item}
            item_path = (*path, 'k:' + json.dumps(key, separators=(',', ':'), sort_keys=True))
            yield from _walk(item_path, '', item)
    elif isinstance(value, list) and name in SET_LISTS:
        yield path, CONTAINER
        for item in value:
            yield (*path, 'v:' + json.dumps(item, separators=(',', ':'))), item
    else:
        yield path, value


def parse(fields: Obj, prefix: Path = ()) -> set[Path]:
    """A FieldsV1 tree as the set of paths it names."""
    paths: set[Path] = set()
    for key, child in fields.items():
        if key == '.':
            paths.add(prefix)
        elif isinstance(child, dict) and child:
            paths |= parse(child, (*prefix, key))
        else:
            paths.add((*prefix, key))
    return paths


def encode(paths: set[Path]) -> Obj:
    """A set of paths as a FieldsV1 tree, members sorted as the apiserver writes them."""
    tree: Obj = {}
    for path in paths:
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    for path in paths:
        node = tree
        for element in path:
            node = node[element]
        if node:
            node['.'] = {}
    return _sorted(tree)


def _sorted(tree: Obj) -> Obj:
    return {key: _sorted(tree[key]) for key in sorted(tree)}
