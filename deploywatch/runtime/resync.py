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
it yields to the event loop, and asks its ``gate``, which may wait (stdout is behind: a
round must not fill the writer's memory) and says whether this replica may print at all
(a standby prints no RESYNC; the rest of the round is skipped, not printed late).
"""
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from deploywatch.model import ids
from deploywatch.model.tracker import Tracker

BATCH = 200  # objects printed between two yields to the event loop

Gate = Callable[[], Awaitable[bool]]


class Writer(Protocol):
    def write(self, event: dict[str, Any]) -> None: ...


async def _open() -> bool:
    return True


async def resync_forever(*, tracker: Tracker, writer: Writer, interval: float, gate: Gate = _open) -> None:
    last = None
    while True:
        delay, slot = ids.next_round(time.time(), interval)
        if last is not None and slot <= last:  # the wall clock was stepped back: never a round again
            delay, slot = interval, last + 1
        last = slot
        await asyncio.sleep(delay)
        for index, key in enumerate(tracker.uids()):
            if index % BATCH == 0:
                if index:
                    await asyncio.sleep(0)
                if not await gate():
                    break  # paused: this round is over
            event = tracker.resync(key, slot=slot)  # None if deleted since the snapshot
            if event is not None:
                writer.write(event)
