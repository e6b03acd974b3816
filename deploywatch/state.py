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
from typing import Any

from deploywatch.tracker import Tracker

logger = logging.getLogger('deploywatch')

FORMAT = 'deploywatch-state/1'
SAVE_INTERVAL = 1.0

Printed = dict[str, dict[str, Any]]


def _checksum(printed: Mapping[str, Any]) -> str:
    """Over a canonical encoding (sorted keys, ASCII), so that loading can recompute it."""
    canonical = json.dumps(printed, separators=(',', ':'), sort_keys=True)
    return hashlib.sha256(canonical.encode('ascii')).hexdigest()


def save(path: pathlib.Path, printed: Mapping[str, dict[str, Any]]) -> None:
    document = json.dumps({'format': FORMAT, 'checksum': _checksum(printed), 'objects': printed},
                          separators=(',', ':'))
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(descriptor, 'wb') as file:
            file.write(document.encode('ascii'))
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


def load(path: pathlib.Path) -> Printed | None:
    """The saved memory, or None (with a warning) if there is none or it cannot be trusted."""
    try:
        text = path.read_text(encoding='ascii')
    except FileNotFoundError:
        logger.info(f"No state file at {path} yet: every Deployment is new to this run.")
        return None
    except (OSError, UnicodeDecodeError) as error:
        logger.warning(f"State file {path} cannot be read ({error}); starting without it.")
        return None
    try:
        document = json.loads(text)
        objects = document['objects']
        valid = (document.get('format') == FORMAT and isinstance(objects, dict)
                 and document.get('checksum') == _checksum(objects))
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        logger.warning(f"State file {path} is torn or corrupt; ignoring it: "
                       "every Deployment is printed as at a first start.")
        return None
    printed: Printed = objects
    return printed


async def keep_saved(tracker: Tracker, path: pathlib.Path) -> None:
    """Save whenever the memory changed, at most every SAVE_INTERVAL seconds, and at the end."""
    saved = -1  # the first round saves: the file exists from the first second of a run
    try:
        while True:
            await asyncio.sleep(SAVE_INTERVAL)
            if tracker.version != saved:
                saved = tracker.version
                # The snapshot is a shallow copy, and the tracker replaces objects rather than
                # changing them, so it can be encoded and written off the event loop.
                await asyncio.to_thread(save, path, tracker.snapshot())
    finally:
        save(path, tracker.snapshot())
