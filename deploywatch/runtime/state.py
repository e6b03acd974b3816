"""
The optional state file (``DEPLOYWATCH_STATE_FILE``): what the stream wrote last, kept
across restarts, so that a restart prints only what changed meanwhile (marked
``inferred``, see ``deploywatch.model.tracker``) instead of every Deployment again.

* What is saved is what was *written*: the writer commits each line to a :class:`Ledger`
  once stdout took it, and only the ledger is saved, so a line that never reached the
  reader is printed by the next run, never skipped.
* Saves are periodic (:data:`SAVE_INTERVAL`, and once at shutdown), not per event. If
  the process dies between two, the next start derives the last changes again from the
  listing: a consumer may see them twice (the same ``id``), never lose one.
* A save never leaves a torn file (a temporary file, fsync, rename), and saves are
  serialised, each taking its snapshot inside the lock, so the final save lands last.
  A torn or corrupt file anyway fails its checksum: a warning, and a start without it.
* The header records the settings that shaped the objects (``shaping``: redaction). A
  run with other settings treats every object as *unknown* (diffing against another
  shape would invent changes), and the header names the objects still unknown, so a
  restart in between does not trust them either. A file that records no shaping is
  read as redacted, the shaping that loses most. Readers ignore header keys they do
  not know, so the format stays ``deploywatch-state/2``.
* A file that is not a state file (a mistyped path) or of a newer format (a rollback)
  is refused before anything connects and never overwritten (:func:`load_usable`).
  A failed save is raised: the operator stops rather than drop its restart promise.
"""
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import pathlib
import tempfile
import threading
from collections.abc import Collection, Mapping
from typing import Any, NamedTuple, Protocol

from deploywatch.base.encoding import Held, plain
from deploywatch.base.settings import Misconfigured

logger = logging.getLogger('deploywatch')

FORMAT = 'deploywatch-state/2'
MAGIC = b'{"format": "deploywatch-state/'  # how every state file begins, of any format version
SAVE_INTERVAL = 1.0

Encoded = dict[str, bytes]  # uid -> the object as kept bytes (``encoding``): JSON, once read from a file
Shaping = Mapping[str, Any]  # the settings that shape the kept objects (``Tracker.shaping``)
UNRECORDED: Shaping = {'redact': True}  # what a file that records none is read as (see above)


class Saved(NamedTuple):
    """A state file's content: the objects, the settings that shaped them, which are unknown."""
    objects: Encoded
    shaping: Shaping = UNRECORDED
    unknown: frozenset[str] = frozenset()

    def unknown_under(self, shaping: Shaping) -> frozenset[str]:
        """The objects whose content a run shaped by ``shaping`` does not know (see above)."""
        if dict(self.shaping) != dict(shaping):
            return frozenset(self.objects)
        return self.unknown & set(self.objects)


class Contents(NamedTuple):
    """What a save writes, taken at once: the objects and which of them are unknown."""
    objects: dict[str, bytes]
    unknown: frozenset[str] = frozenset()


def save(path: pathlib.Path, encoded: Mapping[str, bytes], *, shaping: Shaping = UNRECORDED,
         unknown: Collection[str] = ()) -> None:
    """
    A header line (format, checksum of the rest, shaping, the unknown objects if any), then
    one ``uid<TAB>json`` line per object.

    The objects are the bytes the tracker keeps, already encoded: a save is a
    concatenation, not an encoding per object. Compressed ones are written as their plain
    JSON, so the file's format does not depend on this process's memory.
    """
    body = b''.join(key.encode() + b'\t' + plain(data) + b'\n' for key, data in encoded.items())
    meta: dict[str, Any] = {'format': FORMAT, 'checksum': hashlib.sha256(body).hexdigest(),
                            'shaping': dict(shaping)}
    if unknown:
        meta['unknown'] = sorted(unknown)
    header = json.dumps(meta)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(descriptor, 'wb') as file:
            file.write(header.encode() + b'\n' + body)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load(path: pathlib.Path) -> Encoded | None:
    """The saved objects, or None (with a warning) if there is none or it cannot be trusted."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        logger.info(f"No state file at {path} yet: every Deployment is new to this run.")
        return None
    except OSError as error:
        logger.warning(f"State file {path} cannot be read ({error}); starting without it.")
        return None
    saved = _parse(path, content)
    return None if saved is None else saved.objects


def load_usable(path: pathlib.Path) -> Saved | None:
    """
    The saved file (its objects, their shaping, the unknown ones), or None as :func:`load`,
    after refusing what must not be overwritten: :class:`Misconfigured`, one line.

    Refused: a directory, a folder that does not exist (no save could succeed), a file
    that cannot be read, and a file that is not a deploywatch state file (it does not
    begin as every state file does). An empty file is taken as nothing saved yet.
    """
    problem: str | None = None
    content = b''
    if path.is_dir():
        problem = 'is a directory; name a file in it'
    elif not path.parent.is_dir():
        problem = f'its folder {path.parent} does not exist'
    else:
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            pass
        except OSError as error:
            problem = f'cannot be read ({error.strerror or error})'
        else:
            if content and not content.startswith(MAGIC):
                problem = ('exists and is not a deploywatch state file; it is left as it is: '
                           'name a new file, or remove this one')
            elif content and (newer := _newer_format(content)):
                problem = (f'was written by a newer deploywatch (format {newer}; this one reads {FORMAT}); '
                           'it is left as it is: run that deploywatch, or name a new file')
    if problem is not None:
        raise Misconfigured(f"DEPLOYWATCH_STATE_FILE={path} {problem}.")
    if not content:
        logger.info(f"No state saved at {path} yet: every Deployment is new to this run.")
        return None
    return _parse(path, content)


def _newer_format(content: bytes) -> str | None:
    """The format a newer deploywatch wrote this file in, or None (this one's, older, or unreadable)."""
    try:
        found = json.loads(content.partition(b'\n')[0]).get('format')
        version = int(str(found).rpartition('/')[2])
    except (ValueError, AttributeError):
        return None
    return str(found) if version > int(FORMAT.rpartition('/')[2]) else None


def _parse(path: pathlib.Path, content: bytes) -> Saved | None:
    header, _, body = content.partition(b'\n')
    try:
        meta = json.loads(header)
        valid = (isinstance(meta, dict) and meta.get('format') == FORMAT
                 and meta.get('checksum') == hashlib.sha256(body).hexdigest()
                 and isinstance(meta.get('shaping', UNRECORDED), dict)
                 and isinstance(meta.get('unknown', []), list))
        saved = Saved(dict(_entry(line) for line in body.splitlines()), meta.get('shaping', UNRECORDED),
                      frozenset(map(str, meta.get('unknown', [])))) if valid else None
    except (ValueError, TypeError):
        saved = None
    if saved is None:
        logger.warning(f"State file {path} is torn or corrupt; ignoring it: "
                       "every Deployment is printed as at a first start.")
    return saved


def _entry(line: bytes) -> tuple[str, bytes]:
    key, separator, data = line.partition(b'\t')
    if not separator:
        raise ValueError('no tab in a state line')
    return key.decode(), data


class Memory(Protocol):
    """What is saved: a :class:`Ledger` (or, in tests, a tracker)."""

    @property
    def version(self) -> int: ...

    def snapshot(self) -> Contents: ...


class Ledger:
    """
    What reached stdout: for every object, the last state written, encoded (the state file).

    The writer thread commits to it line by line while the loop takes snapshots, hence the
    lock. What it holds is the tracker's own (bytes, or the tracker's record of them, which
    the packer packs in place: ``encoding.Held``), so the ledger costs one dict entry per
    object, not a second copy of the objects, packed or not.
    """

    def __init__(self, initial: Mapping[str, bytes | Held] | None = None) -> None:
        self._lock = threading.Lock()
        self._written: dict[str, bytes | Held] = dict(initial or {})
        self._unknown: set[str] = set()  # restored under other settings, no line written since
        self._version = 0

    @property
    def version(self) -> int:
        """Moves on every change: tells the saver there is something to save."""
        return self._version

    def written(self, key: str, encoded: bytes | Held | None) -> None:
        """A line about ``key`` was written: its state is now ``encoded`` (None: it was deleted)."""
        with self._lock:
            if encoded is None:
                self._written.pop(key, None)
            else:
                self._written[key] = encoded
            self._unknown.discard(key)
            self._version += 1

    def snapshot(self) -> Contents:
        with self._lock:
            written = {key: value if isinstance(value, bytes) else value.encoded
                       for key, value in self._written.items()}
            return Contents(written, frozenset(self._unknown))

    def restore(self, encoded: Mapping[str, bytes | Held], *, unknown: Collection[str] = ()) -> None:
        """Start from what a previous run wrote (the tracker's restored memory), ``unknown`` as it was."""
        with self._lock:
            self._written = dict(encoded)
            self._unknown = set(unknown) & set(encoded)
            self._version += 1


class SaveError(OSError):
    """A save that failed, naming the file."""


class Saver:
    """Saves of one file, one at a time, each of the memory as it is when its turn comes."""

    def __init__(self, path: pathlib.Path, memory: Memory, *, shaping: Shaping) -> None:
        self.path = path
        self._memory = memory
        self._shaping = shaping  # this run's: what shaped every object it writes
        self._lock = threading.Lock()
        self._saved: int | None = None

    def save(self) -> bool:
        """Save if the memory changed since the last save; whether it did. Raises SaveError."""
        with self._lock:
            version = self._memory.version
            if version == self._saved:
                return False
            try:
                contents = self._memory.snapshot()
                save(self.path, contents.objects, shaping=self._shaping, unknown=contents.unknown)
            except OSError as error:
                reason = error.strerror or error
                raise SaveError(f"saving the state file {self.path} failed: {reason}") from error
            self._saved = version
            return True


async def keep_saved(saver: Saver) -> None:
    """
    Save whenever the memory changed, at most every SAVE_INTERVAL seconds, and at the end.

    The first round saves: the file exists from the first second of a run. A failed save
    raises, and the task ends with it, which stops the operator (``deploywatch.runtime.app``).
    """
    try:
        while True:
            await asyncio.sleep(SAVE_INTERVAL)
            # The snapshot is a new dict of immutable bytes: it is written off the loop.
            await asyncio.to_thread(saver.save)
    finally:
        saver.save()  # waits for a save still in flight (cancelled here, not in its thread)
