"""
The event line, schema ``deploywatch/v1`` (``deploywatch/schema/event-v1.json``).

One function builds every event, so that the field names, their order and the presence
rules (``initial`` only on ADDED, ``old``/``diff`` only on MODIFIED, ``inferred`` only
when true, ``changedBy`` only on ADDED/MODIFIED, ``cluster`` only when named) live in one
place. Small fields come first and ``object``/``old`` last, so a person scanning a
terminal sees the identity before the bulk. Each fact derived from the object is a pure
function in a module named for it: ``rollout``, ``authorship``, ``ids``.
"""
import datetime
import enum
from collections.abc import Mapping
from typing import Any

from deploywatch.base.encoding import Kept
from deploywatch.model import authorship, diffing, ids, objects, rollout

SCHEMA_VERSION = 'deploywatch/v1'

Event = dict[str, Any]


class EventType(enum.StrEnum):
    ADDED = 'ADDED'
    MODIFIED = 'MODIFIED'
    DELETED = 'DELETED'
    RESYNC = 'RESYNC'


def timestamp(moment: datetime.datetime) -> str:
    """
    RFC 3339 in UTC with milliseconds, the precision jq's ``fromdate`` users expect.

    Formatted with ``%04d``: glibc's ``strftime('%Y')`` does not pad the year to four
    digits, and ``isoformat`` is slower, once per event.
    """
    utc = moment if moment.tzinfo is datetime.UTC else moment.astimezone(datetime.UTC)
    return '%04d-%02d-%02dT%02d:%02d:%02d.%03dZ' % (  # noqa: UP031  (% is faster than an f-string here)
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond // 1000)


def build(
        *,
        type: EventType,
        obj: Mapping[str, Any],
        observed: datetime.datetime,
        initial: bool | None = None,
        old: Mapping[str, Any] | None = None,
        inferred: bool = False,
        cluster: str | None = None,
        managed_fields: Any = None,
        authors_before: bytes | None = None,
        slot: int | None = None,
) -> Event:
    """
    One line's content. ``obj`` and ``old`` must already be cleaned (see ``objects.clean``).

    ``managed_fields``: the raw object's ``metadata.managedFields``; ``authors_before``:
    ``authorship.stamps`` of the previous state's (None: unknown); ``slot``: a RESYNC's round.
    """
    metadata = obj.get('metadata')
    metadata = metadata if isinstance(metadata, dict) else {}
    namespace, name = _text(metadata.get('namespace')), _text(metadata.get('name'))
    uid, version = _text(metadata.get('uid')), _text(metadata.get('resourceVersion'))
    event: Event = {
        'apiVersion': SCHEMA_VERSION,
        'type': type.value,
        'id': ids.event_id(type=type.value, uid=uid, resource_version=version, namespace=namespace,
                           name=name, slot=slot),
        'time': timestamp(observed),
    }
    if cluster:
        event['cluster'] = cluster
    event['namespace'], event['name'], event['uid'], event['resourceVersion'] = namespace, name, uid, version
    if type is EventType.ADDED:
        event['initial'] = bool(initial)
    if inferred and type in (EventType.MODIFIED, EventType.DELETED):
        event['inferred'] = True
    summary = event['summary'] = objects.summarize(obj)  # a new dict: the rollout state is its last key
    summary['rollout'] = rollout.rollout(obj)
    changes = None
    if type is EventType.MODIFIED:  # the kept JSON of the new state is what the fast diff checks against
        changes = diffing.diff(old, obj, encoded=obj.json if isinstance(obj, Kept) else None)
    if type in (EventType.ADDED, EventType.MODIFIED):
        event['changedBy'] = authorship.changed_by(managed_fields, before=authors_before, diff=changes,
                                                   obj=obj)
    if changes is not None:
        event['diff'] = changes
    event['object'] = obj
    if type is EventType.MODIFIED and old is not None:  # None: not known (the diff replaces the whole)
        event['old'] = old
    return event


def _text(value: Any) -> str | None:
    """
    An identity field as the schema types it: a string, or null.

    The API server always sends strings here, but the object is user input to
    this module (see ``objects``): a number or a map in ``metadata.name`` must
    not make the line break its schema. ``object`` still carries the value as sent.
    """
    return value if isinstance(value, str) else None
