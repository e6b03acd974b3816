"""
Turns raw watch events into deploywatch events, remembering what was printed.

The informer's cache, reduced to what the stream needs: for every live Deployment (by
uid) the state this stream printed last. The rules it keeps, which a SharedInformer
program does not give:

* MODIFIED carries ``old`` (the state printed before) and a diff against it; DELETED
  carries the last state the API server sent;
* an object listed again at the resourceVersion already printed produces nothing, so a
  relist never invents a second ``initial`` ADDED;
* RESYNC is built only from this memory, and an object leaves it the moment its DELETED
  is built, so no RESYNC follows a DELETED;
* after a complete listing, what the memory holds in that namespace but the listing
  lacks was deleted meanwhile (:meth:`unlisted`: an ``inferred`` DELETED, as a MODIFIED
  found by a listing is inferred); another uid under a listed name was deleted and
  recreated (:meth:`replaced`: its DELETED comes before the new one's ADDED); objects of
  namespaces no watch covers any more are named by :meth:`outside`;
* for ``changedBy`` it keeps each writer's ``managedFields`` stamp, never the field sets;
* memory restored from a state file is *unconfirmed* (no RESYNC: it may be gone) until a
  listing or event shows the object; restored under other settings (:attr:`shaping`) it
  is also *unknown*: seen unchanged it is kept silently, changed its MODIFIED has no
  ``old`` and its diff replaces the whole object.

It knows nothing of Kopf, I/O or time beyond the injected clock, so these rules are
tested on plain dicts.
"""
import dataclasses
import datetime
from collections.abc import Callable, Collection, Mapping
from typing import Any

from deploywatch.base.encoding import STDLIB, TRAIN_AFTER, Packer, decode, encode, kept, plain
from deploywatch.model import authorship, objects
from deploywatch.model.events import Event, EventType, build

__all__ = ['STDLIB', 'Remembered', 'Tracker', 'decode', 'encode', 'identity']  # encode/decode: tests

Clock = Callable[[], datetime.datetime]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def identity(raw: Mapping[str, Any]) -> str:
    """The uid; a recreated Deployment with the same name is a new object."""
    metadata = raw.get('metadata')
    metadata = metadata if isinstance(metadata, dict) else {}
    uid = metadata.get('uid')
    return str(uid) if uid else f"{metadata.get('namespace')}/{metadata.get('name')}"


@dataclasses.dataclass(slots=True)
class Remembered:
    """
    What is kept of one object: enough to compare and filter without decoding it.

    The object is kept as bytes (``deploywatch.base.encoding``: JSON, compressed once
    the tracker holds enough): a decoded Deployment is hundreds of small Python objects,
    which the cyclic garbage collector would walk on every collection, and bytes are one
    object it never looks into. They are decoded only when an event needs the old state.

    A record is never changed but by the packer (``encoding.Held``: ``encoded`` plain, then
    packed, the same content); a new state is a new record. So the state file's ledger can
    hold the record of what was written, and holds it packed once the packer is done.
    """
    version: Any
    namespace: Any
    encoded: bytes
    authors: bytes | None = None  # authorship.stamps of the raw state; None: unknown (restored)
    applied: bytes | None = None  # objects.applied_digest of the raw state; None: none, or unknown


class Tracker:
    def __init__(self, *, redact: bool, clock: Clock = utcnow, cluster: str | None = None,
                 train_after: int = TRAIN_AFTER, in_background: bool = False) -> None:
        self._redact = redact
        # compresses what is kept, from train_after objects on; the operator's on threads (encoding.Packer)
        self._packer = Packer(train_after=train_after, background=in_background)
        self._clock = clock
        self._cluster = cluster  # DEPLOYWATCH_CLUSTER, on every event
        self._printed: dict[str, Remembered] = {}
        self._names: dict[tuple[Any, Any], str] = {}  # (namespace, name) -> the key in _printed
        self._unconfirmed: set[str] = set()
        self._unknown: set[str] = set()  # restored under other settings: the content is not known
        self.version = 0  # moves on every change of the memory: tells the state file to save

    @property
    def shaping(self) -> dict[str, Any]:
        """The settings that shape what is kept, hence what a state file holds (``state``)."""
        return {'redact': self._redact}

    def __len__(self) -> int:
        return len(self._printed)

    def uids(self) -> list[str]:
        """A snapshot of the live objects' keys, safe to iterate while events arrive."""
        return list(self._printed)

    def held(self, key: str) -> Remembered | None:
        """
        The record of the state remembered for ``key`` (None: not alive): what a written line
        commits. Its bytes may be packed later, in place (``encoding.Held``): ``encoding.plain``
        gives the JSON of either form, ``decode`` the object.
        """
        return self._printed.get(key)

    def observe(self, watch_type: str | None, raw: Mapping[str, Any], *,
                inferred: bool = False) -> Event | None:
        """
        The event to print for one watch event, or None if it tells nothing new.

        ``watch_type`` is Kopf's: None for an object found by a listing, else
        ``ADDED``/``MODIFIED``/``DELETED`` from the watch stream. ``inferred``
        marks a DELETED that no watch event reported (see :meth:`unlisted`).
        """
        key = identity(raw)
        self._unconfirmed.discard(key)
        previous = self._printed.get(key)
        version = _metadata(raw).get('resourceVersion')
        if watch_type != 'DELETED' and previous is not None and previous.version == version:
            if key in self._unknown:  # the state printed before, seen as this run keeps it: keep it so
                self._unknown.discard(key)
                self._printed[key] = self._kept(dataclasses.replace(
                    previous, encoded=encode(objects.clean(raw, redact=self._redact)),
                    authors=authorship.stamps(_metadata(raw).get('managedFields'))))
                self.version += 1
            return None  # the same state again (a relist, a replayed ADDED): nothing to clean or save
        known = key not in self._unknown  # else MODIFIED has no old, and its diff replaces the whole
        self._unknown.discard(key)

        # The previous state, decoded once: MODIFIED carries it as ``old``, and while the raw
        # last-applied annotation is unchanged, its redacted one is reused (objects.applied_digest).
        applied = objects.applied_digest(raw) if self._redact else None
        old: Any = None
        reuse: str | None = None
        if previous is not None and watch_type != 'DELETED' and known:
            data = plain(previous.encoded)
            old = kept(decode(data), data)  # carries its JSON into the line (encoding.Kept)
            if applied is not None and previous.applied == applied:
                reuse = objects.last_applied(old)
        obj = objects.clean(raw, redact=self._redact, applied=reuse)
        observed = self._clock()
        self.version += 1
        metadata = _metadata(obj)
        name = (metadata.get('namespace'), metadata.get('name'))
        if watch_type == 'DELETED':
            self._printed.pop(key, None)
            if self._names.get(name) == key:
                del self._names[name]
            return build(type=EventType.DELETED, obj=obj, observed=observed, inferred=inferred,
                         cluster=self._cluster)

        managed = _metadata(raw).get('managedFields')
        data = encode(obj)
        stamps = authorship.stamps(managed)
        self._printed[key] = self._kept(Remembered(version, name[0], data, stamps, applied),
                                        changed=key if previous is not None else None)
        obj = kept(obj, data)
        self._names[name] = key
        self._maybe_train()
        if previous is None:
            return build(type=EventType.ADDED, obj=obj, observed=observed,
                         initial=watch_type is None, cluster=self._cluster, managed_fields=managed)
        return build(type=EventType.MODIFIED, obj=obj, observed=observed,
                     old=old, inferred=watch_type is None, cluster=self._cluster,
                     managed_fields=managed, authors_before=previous.authors)

    def unlisted(self, namespace: str | None, listed: set[str]) -> list[dict[str, Any]]:
        """The last known state of objects in ``namespace`` (None: all) not among ``listed``."""
        return [decode(remembered.encoded) for key, remembered in self._printed.items()
                if key not in listed and (namespace is None or remembered.namespace == namespace)]

    def replaced(self, raw: Mapping[str, Any]) -> list[dict[str, Any]]:
        """
        The last known state of another object under ``raw``'s namespace and name, if any.

        Only a listing can meet one: a watch stream reports the old one's DELETED before
        the new one's ADDED, but a listing shows only the new one, and the old one would
        be found missing (:meth:`unlisted`) only after the whole listing was delivered.
        """
        key = identity(raw)
        if key in self._printed:
            return []  # the common case: a known object listed again
        metadata = _metadata(raw)
        other = self._names.get((metadata.get('namespace'), metadata.get('name')))
        if other is None or other == key or other not in self._printed:
            return []
        return [decode(self._printed[other].encoded)]

    def outside(self, in_scope: Callable[[str | None], bool]) -> list[dict[str, Any]]:
        """The last known state of objects whose namespace is not ``in_scope``: no watch reports them."""
        return [decode(remembered.encoded) for remembered in self._printed.values()
                if not in_scope(remembered.namespace)]

    def announce(self, key: str) -> Event | None:
        """
        ADDED (``initial``) for one object known to be alive, else None: what a replica that
        starts to lead prints, as a listing at its start would (the stream it continues is another's).
        """
        remembered = self._printed.get(key)
        if remembered is None or key in self._unconfirmed:
            return None
        data = plain(remembered.encoded)
        return build(type=EventType.ADDED, obj=kept(decode(data), data), observed=self._clock(),
                     initial=True, cluster=self._cluster)

    def resync(self, key: str, *, slot: int | None = None) -> Event | None:
        """RESYNC for one object if it is known to be alive, else None; ``slot``: the round (``ids``)."""
        remembered = self._printed.get(key)
        if remembered is None or key in self._unconfirmed:
            return None
        data = plain(remembered.encoded)
        return build(type=EventType.RESYNC, obj=kept(decode(data), data), observed=self._clock(),
                     cluster=self._cluster, slot=slot)

    def snapshot(self) -> dict[str, bytes]:
        """The last state of every object, as kept bytes: the state file's content (``state.save``)."""
        return {key: remembered.encoded for key, remembered in self._printed.items()}

    def restore(self, encoded: Mapping[str, bytes], *, unknown: Collection[str] = ()) -> None:
        """
        Start from a previous run's memory; nothing in it is confirmed alive yet, and the
        content of ``unknown`` (kept under other settings: ``state.Saved.unknown_under``)
        is not known.

        Each object is cleaned again with today's settings: a state file written with
        redaction off must not bring env values back into ``old``, RESYNC or an inferred DELETED.
        """
        self._printed, self._names = {}, {}
        for key, data in encoded.items():
            obj = objects.clean(decode(data), redact=self._redact)
            metadata = _metadata(obj)
            remembered = Remembered(metadata.get('resourceVersion'), metadata.get('namespace'), encode(obj))
            self._printed[key] = self._kept(remembered, now=True)
            self._names[metadata.get('namespace'), metadata.get('name')] = key
            self._maybe_train(now=True)  # no loop runs meanwhile: plain objects would only pile up
        self._unconfirmed = set(self._printed)
        self._unknown = set(unknown) & self._unconfirmed

    def _maybe_train(self, *, now: bool = False) -> None:
        """
        Once enough objects are held, train the dictionary on them (once per tracker, in
        the background for the operator); once it is there, compress them all.
        """
        if self._packer.wants(len(self._printed)):
            self._packer.train([remembered.encoded for remembered in self._printed.values()], now=now)
        if self._packer.fresh():
            for remembered in self._printed.values():
                self._packer.keep(remembered, now=now)

    def _kept(self, remembered: Remembered, *, now: bool = False, changed: str | None = None) -> Remembered:
        """
        ``remembered`` (plain), packed by the packer: at once, or soon on its thread; with
        ``changed`` (its key), a new state of an object held before, once it has rested (``Packer.keep``).
        """
        self._packer.keep(remembered, now=now, changed=changed)
        return remembered


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get('metadata')
    return metadata if isinstance(metadata, dict) else {}
