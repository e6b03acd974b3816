"""
Turns Kopf's raw watch events into deploywatch events, remembering what was printed.

This is the informer's cache, reduced to what the stream needs: for every live
Deployment (by uid) the state this stream printed last. From it follow
the guarantees a SharedInformer program does not give:

* MODIFIED carries ``old`` (the state printed before) and a diff against it;
* DELETED carries the last state the API server sent;
* a relist (start-up, or Kopf's restart after ``410 Gone``) prints only what
  changed: an object listed again with the resourceVersion already printed
  produces nothing, so a reconnect never invents a second ``initial`` ADDED;
* RESYNC is only ever built from this memory, and an object leaves the memory
  the moment its DELETED is built, so a RESYNC cannot follow a DELETED.

It knows nothing of Kopf, I/O or time sources beyond the injected clock, so the
rules above are tested on plain dicts.
"""
import datetime
from collections.abc import Callable, Mapping
from typing import Any

from deploywatch import objects
from deploywatch.events import Event, EventType, build

Clock = Callable[[], datetime.datetime]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def identity(raw: Mapping[str, Any]) -> str:
    """The uid; a recreated Deployment with the same name is a new object."""
    metadata = raw.get('metadata')
    metadata = metadata if isinstance(metadata, Mapping) else {}
    uid = metadata.get('uid')
    return str(uid) if uid else f"{metadata.get('namespace')}/{metadata.get('name')}"


class Tracker:
    def __init__(self, *, redact: bool, clock: Clock = utcnow) -> None:
        self._redact = redact
        self._clock = clock
        self._printed: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._printed)

    def uids(self) -> list[str]:
        """A snapshot of the live objects' keys, safe to iterate while events arrive."""
        return list(self._printed)

    def observe(self, watch_type: str | None, raw: Mapping[str, Any]) -> Event | None:
        """
        The event to print for one watch event, or None if it tells nothing new.

        ``watch_type`` is Kopf's: None for an object found by a listing, else
        ``ADDED``/``MODIFIED``/``DELETED`` from the watch stream.
        """
        key = identity(raw)
        obj = objects.clean(raw, redact=self._redact)
        observed = self._clock()

        if watch_type == 'DELETED':
            self._printed.pop(key, None)
            return build(type=EventType.DELETED, obj=obj, observed=observed)

        old = self._printed.get(key)
        self._printed[key] = obj
        if old is None:
            return build(type=EventType.ADDED, obj=obj, observed=observed,
                         initial=watch_type is None)
        if _version(old) == _version(obj):
            return None  # the same state again: a relist or a replayed ADDED
        return build(type=EventType.MODIFIED, obj=obj, observed=observed, old=old)

    def resync(self, key: str) -> Event | None:
        """RESYNC for one object if it is still alive, else None."""
        obj = self._printed.get(key)
        if obj is None:
            return None
        return build(type=EventType.RESYNC, obj=obj, observed=self._clock())


def _version(obj: Mapping[str, Any]) -> Any:
    metadata = obj.get('metadata')
    return metadata.get('resourceVersion') if isinstance(metadata, Mapping) else None
