"""
RFC 6902 JSON Patch from one Deployment state to the next.

Written here rather than taken from ``jsonpatch.make_patch`` because the stream
wants a patch a human can read: a changed leaf is one ``replace`` at its full
path (``/spec/replicas``), not a remove/add pair or a move guessed from list
similarity. Lists are compared item by item when their lengths match (a new
image is ``/spec/template/spec/containers/0/image``); a list that grows or
shrinks is replaced whole, which is always correct and rare for Deployments.

Paths that change on every write and carry no meaning for a reader are left out:
``metadata.resourceVersion`` and ``metadata.managedFields``.
"""
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

Operation = dict[str, Any]

IGNORED_PATHS = frozenset({'/metadata/resourceVersion', '/metadata/managedFields'})
_ABSENT = object()  # a key missing from the old map: equal to nothing


def escape(token: str) -> str:
    """Escape one path token as RFC 6901 requires (``~`` first, then ``/``)."""
    if '~' in token or '/' in token:
        return token.replace('~', '~0').replace('/', '~1')
    return token


def diff(old: Any, new: Any, *, encoded: bytes | None = None) -> list[Operation]:
    """
    The operations that turn ``old`` into ``new``, in a stable, sorted order.
    ``encoded``, if given, is ``orjson.dumps(new)`` (the tracker keeps it).

    Two walks give the same operations. The fast one (:func:`_loose`) lets ``==``, in C,
    decide which subtrees are the same, so Python walks only the paths that changed; but
    ``==`` holds ``1 == 1.0 == True``, which are different JSON. So it also rebuilds
    ``new`` with every subtree it called the same taken from ``old``: that encodes as
    ``new`` does only if each such subtree encodes as its counterpart. Where it does not
    (a type changed under ``==``, keys reordered, what orjson cannot encode), the strict
    walk (:func:`_strict`) decides each subtree by its encoding.
    """
    operations: list[Operation] = []
    try:
        rebuilt = _loose(old, new, '', operations)
        if orjson.dumps(rebuilt) == (encoded if encoded is not None else orjson.dumps(new)):
            return operations
    except TypeError:  # orjson.JSONEncodeError is one: the strict walk copes
        pass
    operations = []
    _strict(old, new, '', operations)
    return operations


def _loose(old: Any, new: Any, path: str, operations: list[Operation]) -> Any:
    """
    The operations as ``==`` sees them; returns ``new`` rebuilt with the subtrees that
    ``==`` called the same taken from ``old`` (maps in ``new``'s key order). A map is
    first compared key by key in ``new``'s order (``==`` in C, nothing else for what is
    the same), then only what differs is walked, in sorted order, as :func:`_strict` does.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        rebuilt: dict[str, Any] = {}
        differing: list[str] = []
        added = 0
        for key, new_value in new.items():
            old_value = old.get(key, _ABSENT)
            if old_value is new_value or old_value == new_value:
                rebuilt[key] = old_value
            else:
                rebuilt[key] = new_value  # holds the place; replaced below if walked
                differing.append(key)
                added += old_value is _ABSENT
        if len(old) > len(new) - added:  # some keys of old are not in new
            differing.extend(old.keys() - new.keys())
        for key, child in _keys(old, new, differing, path, operations):
            rebuilt[key] = _loose(old[key], new[key], child, operations)
        return rebuilt
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [old_item if old_item is new_item or old_item == new_item
                else _loose(old_item, new_item, f'{path}/{index}', operations)
                for index, (old_item, new_item) in enumerate(zip(old, new, strict=True))]
    operations.append({'op': 'replace', 'path': path, 'value': new})
    return new


def _strict(old: Any, new: Any, path: str, operations: list[Operation]) -> None:
    """
    Walk both documents; skip whole subtrees that are the same JSON (:func:`_same`).
    The documents are parsed JSON, so maps are ``dict`` and arrays ``list``: concrete
    type checks, cheaper than the ABCs.
    """
    if path in IGNORED_PATHS:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key, child in _keys(old, new, old.keys() | new.keys(), path, operations):
            if not _same(old[key], new[key]):
                _strict(old[key], new[key], child, operations)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (old_item, new_item) in enumerate(zip(old, new, strict=True)):
            if not _same(old_item, new_item):
                _strict(old_item, new_item, f'{path}/{index}', operations)
    elif type(old) is not type(new) or old != new:  # 1 vs 1.0 vs True are different JSON
        operations.append({'op': 'replace', 'path': path, 'value': new})


def _keys(old: dict[str, Any], new: dict[str, Any], keys: Iterable[str], path: str,
          operations: list[Operation]) -> Iterator[tuple[str, str]]:
    """
    ``keys`` of two maps in sorted order, with their paths: a key only in ``old`` is a
    ``remove``, only in ``new`` an ``add``; a key in both is for the caller to walk.
    The ignored paths are skipped.
    """
    for key in sorted(keys):
        child = f'{path}/{escape(key)}'
        if child in IGNORED_PATHS:
            continue
        if key not in new:
            operations.append({'op': 'remove', 'path': child})
        elif key not in old:
            operations.append({'op': 'add', 'path': child, 'value': new[key]})
        else:
            yield key, child


def _same(old: Any, new: Any) -> bool:
    """
    Equal as JSON. ``==`` decides fast, but holds ``1 == 1.0 == True``; where it
    says equal, the encodings must agree too (orjson writes 1, 1.0 and true).
    Whatever orjson cannot encode is left to the walk.
    """
    if old is new:
        return True
    if old != new:
        return False
    if not isinstance(old, (dict, list)):
        return type(old) is type(new)
    try:
        return orjson.dumps(old) == orjson.dumps(new)
    except TypeError:
        return False
