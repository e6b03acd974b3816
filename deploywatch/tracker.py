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
  the moment its DELETED is built, so a RESYNC cannot follow a DELETED;
* after a complete listing, objects it remembers in that namespace but that the
  listing lacks were deleted meanwhile: :meth:`unlisted` names them, and their
  DELETED is marked ``inferred``, as is a MODIFIED found by a listing (the
  states in between were not seen);
* memory restored from a state file (``deploywatch.state``) is *unconfirmed*
  until a listing or watch event shows the object again: it gets no RESYNC,
  since it may be gone already.

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
        self._unconfirmed: set[str] = set()
        self.version = 0  # moves on every change of the memory: tells the state file to save

    def __len__(self) -> int:
        return len(self._printed)

    def uids(self) -> list[str]:
        """A snapshot of the live objects' keys, safe to iterate while events arrive."""
        return list(self._printed)

    def observe(self, watch_type: str | None, raw: Mapping[str, Any], *,
                inferred: bool = False) -> Event | None:
        """
        The event to print for one watch event, or None if it tells nothing new.

        ``watch_type`` is Kopf's: None for an object found by a listing, else
        ``ADDED``/``MODIFIED``/``DELETED`` from the watch stream. ``inferred``
        marks a DELETED that no watch event reported (see :meth:`unlisted`).
        """
        key = identity(raw)
        obj = objects.clean(raw, redact=self._redact)
        observed = self._clock()
        self._unconfirmed.discard(key)
        self.version += 1

        if watch_type == 'DELETED':
            self._printed.pop(key, None)
            return build(type=EventType.DELETED, obj=obj, observed=observed, inferred=inferred)

        old = self._printed.get(key)
        self._printed[key] = obj
        if old is None:
            return build(type=EventType.ADDED, obj=obj, observed=observed,
                         initial=watch_type is None)
        if _version(old) == _version(obj):
            return None  # the same state again: a relist or a replayed ADDED
        return build(type=EventType.MODIFIED, obj=obj, observed=observed, old=old,
                     inferred=watch_type is None)

    def unlisted(self, namespace: str | None, listed: set[str]) -> list[dict[str, Any]]:
        """The last known state of objects in ``namespace`` (None: all) not among ``listed``."""
        return [obj for key, obj in self._printed.items()
                if key not in listed and (namespace is None or _namespace(obj) == namespace)]

    def resync(self, key: str) -> Event | None:
        """RESYNC for one object if it is known to be alive, else None."""
        obj = self._printed.get(key)
        if obj is None or key in self._unconfirmed:
            return None
        return build(type=EventType.RESYNC, obj=obj, observed=self._clock())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """What was printed last, per object: the content of the state file."""
        return dict(self._printed)

    def restore(self, printed: Mapping[str, dict[str, Any]]) -> None:
        """Start from a previous run's memory; nothing in it is confirmed alive yet."""
        self._printed = dict(printed)
        self._unconfirmed = set(printed)


def _namespace(obj: Mapping[str, Any]) -> Any:
    metadata = obj.get('metadata')
    return metadata.get('namespace') if isinstance(metadata, Mapping) else None


def _version(obj: Mapping[str, Any]) -> Any:
    metadata = obj.get('metadata')
    return metadata.get('resourceVersion') if isinstance(metadata, Mapping) else None
