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

A RESYNC says again what was said; a change must never wait behind it. Before each line the
round asks ``may_print``: no while stdout is behind (the Deployment watches are paused) or
this replica is a standby. Then the rest of the round is dropped, not printed late, and the
next round is skipped too: a round that waited for the gate to open would refill stdout at
once, each time it opened, and a paused watch would never get its request answered in
between (issue 20). A reader slower than the rounds gets every other round, cut short.
"""
import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any, Protocol

from deploywatch.model import ids
from deploywatch.model.tracker import Tracker

BATCH = 200  # objects printed between two yields to the event loop

MayPrint = Callable[[], bool]


class Writer(Protocol):
    def write(self, event: dict[str, Any]) -> None: ...


def _always() -> bool:
    return True


async def resync_forever(*, tracker: Tracker, writer: Writer, interval: float, may_print: MayPrint = _always,
                         rounds: collections.Counter[str] | None = None) -> None:
    """``rounds`` counts the rounds by outcome: ``printed``, ``cut`` (stopped part way) or ``skipped``."""
    rounds = collections.Counter() if rounds is None else rounds
    last = None
    cut = False
    while True:
        delay, slot = ids.next_round(time.time(), interval)
        if last is not None and slot <= last:  # the wall clock was stepped back: never a round again
            delay, slot = interval, last + 1
        last = slot
        await asyncio.sleep(delay)
        if cut:  # the round before gave way to the watches: so does this one, whole
            cut = False
            rounds['skipped'] += 1
            continue
        cut = await _round(tracker, writer, slot, may_print)
        rounds['cut' if cut else 'printed'] += 1


async def _round(tracker: Tracker, writer: Writer, slot: int, may_print: MayPrint) -> bool:
    """Print one round; whether it was cut short."""
    for index, key in enumerate(tracker.uids()):
        if index and index % BATCH == 0:
            await asyncio.sleep(0)
        if not may_print():
            return True
        event = tracker.resync(key, slot=slot)  # None if deleted since the snapshot
        if event is not None:
            writer.write(event)
    return False
