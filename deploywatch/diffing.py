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
from collections.abc import Mapping, Sequence
from typing import Any

Operation = dict[str, Any]

IGNORED_PATHS = frozenset({'/metadata/resourceVersion', '/metadata/managedFields'})


def escape(token: str) -> str:
    """Escape one path token as RFC 6901 requires (``~`` first, then ``/``)."""
    return token.replace('~', '~0').replace('/', '~1')


def diff(old: Any, new: Any) -> list[Operation]:
    """The operations that turn ``old`` into ``new``, in a stable, sorted order."""
    operations: list[Operation] = []
    _diff(old, new, '', operations)
    return operations


def _diff(old: Any, new: Any, path: str, operations: list[Operation]) -> None:
    if path in IGNORED_PATHS:
        return
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(old.keys() | new.keys()):
            child = f'{path}/{escape(key)}'
            if child in IGNORED_PATHS:
                continue
            if key not in new:
                operations.append({'op': 'remove', 'path': child})
            elif key not in old:
                operations.append({'op': 'add', 'path': child, 'value': new[key]})
            else:
                _diff(old[key], new[key], child, operations)
    elif _is_list(old) and _is_list(new) and len(old) == len(new):
        for index, (old_item, new_item) in enumerate(zip(old, new, strict=False)):
            _diff(old_item, new_item, f'{path}/{index}', operations)
    elif type(old) is not type(new) or old != new:  # 1 vs 1.0 vs True are different JSON
        operations.append({'op': 'replace', 'path': path, 'value': new})


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))
