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


def diff(old: Any, new: Any) -> list[Operation]:
    """The operations that turn ``old`` into ``new``, in a stable, sorted order."""
    operations: list[Operation] = []
    _diff(old, new, '', operations)
    return operations


def _diff(old: Any, new: Any, path: str, operations: list[Operation]) -> None:
    """
    Walk both documents; skip whole subtrees that are the same.

    The documents are parsed JSON, so maps are ``dict`` and arrays are ``list``
    (checked with concrete types: the ABC checks were a tenth of the cost).
    Most of a Deployment does not change between two events, and comparing a
    subtree in C (:func:`_same`) is far cheaper than walking it in Python.
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
                _diff(old[key], new[key], child, operations)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (old_item, new_item) in enumerate(zip(old, new, strict=True)):
            if not _same(old_item, new_item):
                _diff(old_item, new_item, f'{path}/{index}', operations)
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
