"""
The optional state file: what the stream printed last, kept across restarts.

Without it, a restart prints every Deployment again as ``ADDED initial``: right
for a terminal, a flood for an audit store. With ``DEPLOYWATCH_STATE_FILE``, the
tracker's memory is saved, and on start-up it is restored *unconfirmed*: the
first listing then prints only real differences (ADDED for new objects,
MODIFIED inferred for changed ones, DELETED inferred for the ones deleted
while deploywatch was down) — see ``deploywatch.tracker``.

Saving is periodic (every :data:`SAVE_INTERVAL` seconds while something changed,
and once more at shutdown), not per event: at thousands of events a second a
write per event would cost more than the stream itself. If the process dies
between two saves, the next start re-derives those last changes from the
listing, marked ``inferred``: a consumer sees them twice at most, never loses
one, and can de-duplicate on (uid, resourceVersion, type).

A save never leaves a torn file: it writes a temporary file in the same
directory, fsyncs it, and renames it over the old one. A file that is torn or
corrupt anyway (another writer, a full disk, a hand edit) is detected by its
checksum, reported on stderr and ignored: deploywatch then starts as without it.
"""
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import pathlib
import tempfile
from collections.abc import Mapping

from deploywatch.tracker import Tracker

logger = logging.getLogger('deploywatch')

FORMAT = 'deploywatch-state/2'
SAVE_INTERVAL = 1.0

Encoded = dict[str, bytes]  # uid -> the object as JSON bytes, as the tracker keeps it


def save(path: pathlib.Path, encoded: Mapping[str, bytes]) -> None:
    """
    A header line (format, checksum of the rest), then one ``uid<TAB>json`` line per object.

    The objects are written as the tracker keeps them, already encoded: saving 10,000
    Deployments is a concatenation, not 10,000 encodings.
    """
    body = b''.join(key.encode() + b'\t' + data + b'\n' for key, data in encoded.items())
    header = json.dumps({'format': FORMAT, 'checksum': hashlib.sha256(body).hexdigest()})
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
    """The saved memory, or None (with a warning) if there is none or it cannot be trusted."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        logger.info(f"No state file at {path} yet: every Deployment is new to this run.")
        return None
    except OSError as error:
        logger.warning(f"State file {path} cannot be read ({error}); starting without it.")
        return None
    header, _, body = content.partition(b'\n')
    try:
        meta = json.loads(header)
        valid = (isinstance(meta, dict) and meta.get('format') == FORMAT
                 and meta.get('checksum') == hashlib.sha256(body).hexdigest())
        encoded = dict(_entry(line) for line in body.splitlines()) if valid else {}
    except (ValueError, TypeError):
        valid = False
    if not valid:
        logger.warning(f"State file {path} is torn or corrupt; ignoring it: "
                       "every Deployment is printed as at a first start.")
        return None
    return encoded


def _entry(line: bytes) -> tuple[str, bytes]:
    key, separator, data = line.partition(b'\t')
    if not separator:
        raise ValueError('no tab in a state line')
    return key.decode(), data


async def keep_saved(tracker: Tracker, path: pathlib.Path) -> None:
    """Save whenever the memory changed, at most every SAVE_INTERVAL seconds, and at the end."""
    saved = -1  # the first round saves: the file exists from the first second of a run
    try:
        while True:
            await asyncio.sleep(SAVE_INTERVAL)
            if tracker.version != saved:
                saved = tracker.version
                # The snapshot is a new dict of immutable bytes: it can be written off the loop.
                await asyncio.to_thread(save, path, tracker.snapshot())
    finally:
        save(path, tracker.snapshot())
