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
from typing import Any

import orjson

Operation = dict[str, Any]

IGNORED_PATHS = frozenset({'/metadata/resourceVersion', '/metadata/managedFields'})


def escape(token: str) -> str:
    """Escape one path token as RFC 6901 requires (``~`` first, then ``/``)."""
    if '~' in token or '/' in token:
        return token.replace('~', '~0').replace('/', '~1')
    return token


def diff(old: Any, new: Any, *, encoded: bytes | None = None) -> list[Operation]:
    """
    The operations that turn ``old`` into ``new``, in a stable, sorted order.

    ``encoded``, if given, is ``orjson.dumps(new)`` (the tracker has it: it keeps it).

    Two walks give the same operations. The fast one (:func:`_loose`) lets ``==``, in C,
    decide which subtrees are the same, and so walks in Python only the few paths that
    changed; but ``==`` holds ``1 == 1.0 == True``, which are different JSON. So it also
    builds ``new`` again with every subtree it called the same taken from ``old``: that
    encodes exactly as ``new`` does only if each of those subtrees encodes as its
    counterpart, which is what "the same JSON" means here (:func:`_same`). Where it does
    not (a type changed under ``==``, a map's keys reordered, what orjson cannot encode),
    the strict walk (:func:`_strict`) decides each subtree by its encoding. For a status
    update of the bench's Deployment: 53 us strict, ~15 us fast, checked.
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
    ``==`` called the same taken from ``old`` (maps in ``new``'s key order).
    """
    if isinstance(old, dict) and isinstance(new, dict):
        rebuilt: dict[str, Any] = {}
        for key in sorted(old.keys() | new.keys()):
            if key not in new:
                if f'{path}/{escape(key)}' not in IGNORED_PATHS:
                    operations.append({'op': 'remove', 'path': f'{path}/{escape(key)}'})
                continue
            if key not in old:
                if f'{path}/{escape(key)}' not in IGNORED_PATHS:
                    operations.append({'op': 'add', 'path': f'{path}/{escape(key)}', 'value': new[key]})
                rebuilt[key] = new[key]
                continue
            old_value, new_value = old[key], new[key]
            if old_value is new_value or old_value == new_value:
                rebuilt[key] = old_value
                continue
            child = f'{path}/{escape(key)}'
            rebuilt[key] = new_value if child in IGNORED_PATHS else _loose(old_value, new_value, child,
                                                                           operations)
        return {key: rebuilt[key] for key in new}
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [old_item if old_item is new_item or old_item == new_item
                else _loose(old_item, new_item, f'{path}/{index}', operations)
                for index, (old_item, new_item) in enumerate(zip(old, new, strict=True))]
    operations.append({'op': 'replace', 'path': path, 'value': new})
    return new


def _strict(old: Any, new: Any, path: str, operations: list[Operation]) -> None:
    """
    Walk both documents; skip whole subtrees that are the same JSON (:func:`_same`).

    The documents are parsed JSON, so maps are ``dict`` and arrays are ``list``
    (checked with concrete types: the ABC checks were a tenth of the cost).
    """
    if path in IGNORED_PATHS:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            child = f'{path}/{escape(key)}'
            if child in IGNORED_PATHS:
                continue
            if key not in new:
                operations.append({'op': 'remove', 'path': child})
            elif key not in old:
                operations.append({'op': 'add', 'path': child, 'value': new[key]})
            elif not _same(old[key], new[key]):
                _strict(old[key], new[key], child, operations)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (old_item, new_item) in enumerate(zip(old, new, strict=True)):
            if not _same(old_item, new_item):
                _strict(old_item, new_item, f'{path}/{index}', operations)
    elif type(old) is not type(new) or old != new:  # 1 vs 1.0 vs True are different JSON
        operations.append({'op': 'replace', 'path': path, 'value': new})


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
