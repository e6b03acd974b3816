"""
Who made a change (``changedBy``), read from ``metadata.managedFields``.

The API server keeps one entry per writer (manager, operation Update or Apply,
subresource): the fields it set and when it last wrote. The author of a change is the
entry the change *added or advanced*, not simply the newest: times are whole seconds,
and writers share a second all the time. Recordings of real servers
(``tests/emulator/recordings/v1.24``, ``v1.28``) show three more traps: on v1.24 an
entry's ``time`` moves only when its field set changes; a write through ``/scale`` has
no ``time`` at all; and a write takes over the fields it sets, so the previous owner's
entry shrinks while keeping its time. A new entry or a moved time is a sign of
authorship; a changed field set is not.

So :func:`changed_by` decides in steps, each only when the one before cannot:

1. the entries that are new or whose ``time`` moved since the previous state: if one, it;
2. among those (or all), the ones owning a field the diff touched (walking the new
   state's ``fieldsV1``, list items by their ``k:``/``v:`` keys): if one, it;
3. if the change moved ``metadata.generation`` (the spec changed, which only the main
   resource and ``/scale`` can write): the one such entry left, if one (this attributes
   a value hidden by redaction);
4. otherwise ``None``: a guess would be worse. Also ``None`` without managedFields.

An ADDED takes the sole entry, or the strictly newest when every entry has a time.
After a restart from a state file the previous entries are unknown, and steps 2-4 run
over all. Between two states the tracker keeps only :func:`stamps` (manager,
operation, subresource, time), never the field sets.
"""
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import orjson

from deploywatch.base.encoding import tight

Stamp = tuple[str, str | None, str | None, str | None]  # manager, operation, subresource, time


class ChangedBy(TypedDict):
    manager: str
    operation: str | None
    subresource: str | None
    time: str | None


def entries(managed_fields: Any) -> list[Mapping[str, Any]]:
    """The usable entries of ``metadata.managedFields``: maps that name a manager."""
    if not isinstance(managed_fields, list):
        return []
    return [entry for entry in managed_fields
            if isinstance(entry, dict) and isinstance(entry.get('manager'), str)]


def stamps(managed_fields: Any) -> bytes:
    """What is remembered of a state's entries, for the next state's step 1: JSON bytes, right-sized."""
    return tight(orjson.dumps([list(_stamp(entry)) for entry in entries(managed_fields)]))


def changed_by(managed_fields: Any, *, before: bytes | None, diff: Sequence[Mapping[str, Any]] | None,
               obj: Mapping[str, Any]) -> ChangedBy | None:
    """
    The entry that made the change from the previous state to ``obj``, described.

    ``before``: :func:`stamps` of the previous state (None: unknown); ``diff``: the
    change (None for an ADDED: no previous state); ``obj``: the new state.
    """
    found = entries(managed_fields)
    if not found:
        return None
    if diff is None:
        return _describe(found[0] if len(found) == 1 else _newest(found))
    pool = found
    if before is not None:
        known = _known(before)
        advanced = [entry for entry in found if _stamp(entry) not in known]
        if len(advanced) == 1:
            return _describe(advanced[0])
        pool = advanced or found
    touched = [_tokens(operation.get('path')) for operation in diff if operation.get('op') != 'remove']
    owners = [entry for entry in pool if any(owns(entry.get('fieldsV1'), tokens, obj) for tokens in touched)]
    if len(owners) == 1:
        return _describe(owners[0])
    if not owners and any(operation.get('path') == '/metadata/generation' for operation in diff):
        spec_writers = [entry for entry in pool if entry.get('subresource') in (None, '', 'scale')]
        if len(spec_writers) == 1:
            return _describe(spec_writers[0])
    return None


def owns(fields: Any, tokens: Sequence[str], obj: Any) -> bool:
    """
    Whether a FieldsV1 tree names the field at ``tokens`` in ``obj`` (or a part of it).

    ``f:name`` is a member of a map or struct, ``k:{...}`` an item of a keyed list
    (found by its merge keys in ``obj``), ``v:...`` an item of a set; an empty node is
    owned whole (an atomic value: whatever lies inside it is owned too).
    """
    node, value = fields, obj
    for token in tokens:
        if not isinstance(node, dict) or not node:
            return isinstance(node, dict)  # {}: an atomic value, owned with everything in it
        if isinstance(value, list):
            if not token.isdigit() or int(token) >= len(value):
                return False
            value = value[int(token)]
            key = _item_key(node, value)
            if key is None:
                return False
            node = node[key]
        else:
            node = node.get('f:' + token)
            if node is None:
                return False
            value = value.get(token) if isinstance(value, dict) else None
    return isinstance(node, dict)


def _item_key(node: Mapping[str, Any], item: Any) -> str | None:
    for key in node:
        if key.startswith('k:') and isinstance(item, dict):
            try:
                wanted = json.loads(key[2:])
            except ValueError:
                continue
            if isinstance(wanted, dict) and all(item.get(name) == value for name, value in wanted.items()):
                return key
        elif key.startswith('v:'):
            try:
                if json.loads(key[2:]) == item:
                    return key
            except ValueError:
                continue
    return None


def _tokens(path: Any) -> list[str]:
    if not isinstance(path, str) or not path.startswith('/'):
        return []
    return [token.replace('~1', '/').replace('~0', '~') for token in path.split('/')[1:]]


def _stamp(entry: Mapping[str, Any]) -> Stamp:
    return (entry['manager'], _text(entry.get('operation')), _text(entry.get('subresource')),
            _text(entry.get('time')))


def _known(data: bytes) -> set[Any]:
    """The stamps of :func:`stamps`' bytes, as tuples (what :func:`_stamp` gives); none if unreadable."""
    try:
        value = orjson.loads(data)
        return {tuple(item) for item in value if isinstance(item, list)} if isinstance(value, list) else set()
    except (orjson.JSONDecodeError, TypeError):  # TypeError: an unhashable part; only ever our own bytes
        return set()


def _newest(found: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The entry strictly newest by time; None if any has no time or two share the newest."""
    times = [time for time in (entry.get('time') for entry in found) if isinstance(time, str)]
    if len(times) < len(found):
        return None
    latest = max(times)
    return found[times.index(latest)] if times.count(latest) == 1 else None


def _describe(entry: Mapping[str, Any] | None) -> ChangedBy | None:
    if entry is None:
        return None
    return {
        'manager': entry['manager'],
        'operation': _text(entry.get('operation')),
        'subresource': _text(entry.get('subresource')) or None,
        'time': _text(entry.get('time')),
    }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
