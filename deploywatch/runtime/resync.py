"""
The periodic RESYNC, as one operator-wide task instead of per-object timers.

``@kopf.timer`` is per object and adds a finalizer (or, without one, never stops for a
deleted object); one loop over the tracker's memory has neither problem and makes no
API request: RESYNC re-announces the state deploywatch holds, as a SharedInformer's
resync does.

Rounds are due at whole multiples of the interval in Unix time, and each RESYNC's ``id``
names its round (``deploywatch.model.ids``), so replicas and restarts agree on it. The
loop sleeps on the event loop's monotonic clock, so a wall-clock jump moves at most one
round, and a clock stepped back never makes a round's ids print twice. Between batches
it yields to the event loop.

A RESYNC says again what was said; a change must never wait behind it. ``kept_up`` says for
how long stdout has kept up (0 while it is behind, or on a standby, which prints no RESYNC).
A round begins only when stdout has kept up for a whole interval, and stops at the first
line it is behind again: the rest is dropped, not printed late. A round that waited for stdout
instead would refill it each time it caught up, and a paused watch would never get its request
answered in between (issue 20); now the watches always get a whole interval first.
"""
import asyncio
import collections
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from deploywatch.model import ids
from deploywatch.model.tracker import Tracker

BATCH = 200  # objects printed between two yields to the event loop

KeptUp = Callable[[], float]  # seconds stdout has kept up; 0 while behind or standing by


class Writer(Protocol):
    def write(self, event: dict[str, Any]) -> None: ...


def _always() -> float:
    return math.inf


async def resync_forever(*, tracker: Tracker, writer: Writer, interval: float, kept_up: KeptUp = _always,
                         rounds: collections.Counter[str] | None = None) -> None:
    """``rounds`` counts the rounds by outcome: ``printed``, ``cut`` (stopped part way) or ``skipped``."""
    rounds = collections.Counter() if rounds is None else rounds
    last = None
    while True:
        delay, slot = ids.next_round(time.time(), interval)
        if last is not None and slot <= last:  # the wall clock was stepped back: never a round again
            delay, slot = interval, last + 1
        last = slot
        await asyncio.sleep(delay)
        if kept_up() < interval:  # the watches go first: a whole interval of stdout keeping up
            rounds['skipped'] += 1
            continue
        rounds['printed' if await _round(tracker, writer, slot, kept_up) else 'cut'] += 1


async def _round(tracker: Tracker, writer: Writer, slot: int, kept_up: KeptUp) -> bool:
    """Print one round; whether it was printed whole."""
    for index, key in enumerate(tracker.uids()):
        if index and index % BATCH == 0:
            await asyncio.sleep(0)
        if not kept_up():
            return False
        event = tracker.resync(key, slot=slot)  # None if deleted since the snapshot
        if event is not None:
            writer.write(event)
    return True
