"""
The event line, schema ``deploywatch/v1`` (``deploywatch/schema/event-v1.json``).

One function builds every line so that field names, their order and the
presence rules (``initial`` only on ADDED, ``old``/``diff`` only on MODIFIED)
live in one place. Small fields come first and the large ``object``/``old``
last, so that a person scanning a terminal sees the identity before the bulk.
"""
import datetime
import enum
from collections.abc import Mapping
from typing import Any

from deploywatch import diffing, objects

SCHEMA_VERSION = 'deploywatch/v1'

Event = dict[str, Any]


class EventType(enum.StrEnum):
    ADDED = 'ADDED'
    MODIFIED = 'MODIFIED'
    DELETED = 'DELETED'
    RESYNC = 'RESYNC'


def timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 in UTC with milliseconds, the precision jq's ``fromdate`` users expect."""
    utc = moment.astimezone(datetime.UTC)
    return utc.strftime('%Y-%m-%dT%H:%M:%S.') + f'{utc.microsecond // 1000:03d}Z'


def build(
        *,
        type: EventType,
        obj: Mapping[str, Any],
        observed: datetime.datetime,
        initial: bool | None = None,
        old: Mapping[str, Any] | None = None,
) -> Event:
    """One line's content. ``obj`` and ``old`` must already be cleaned (see ``objects.clean``)."""
    metadata = obj.get('metadata')
    metadata = metadata if isinstance(metadata, Mapping) else {}
    event: Event = {
        'apiVersion': SCHEMA_VERSION,
        'type': type.value,
        'time': timestamp(observed),
        'namespace': metadata.get('namespace'),
        'name': metadata.get('name'),
        'uid': metadata.get('uid'),
        'resourceVersion': metadata.get('resourceVersion'),
    }
    if type is EventType.ADDED:
        event['initial'] = bool(initial)
    event['summary'] = objects.summarize(obj)
    if type is EventType.MODIFIED:
        event['diff'] = diffing.diff(old, obj)
    event['object'] = obj
    if type is EventType.MODIFIED:
        event['old'] = old
    return event
