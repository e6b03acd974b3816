"""
The periodic RESYNC, as one operator-wide task instead of per-object timers.

Kopf's ``@kopf.timer`` would be the obvious tool, but it is per object: it adds a
finalizer by default (making deploywatch block deletions), and without the
finalizer Kopf never stops the timer of a deleted object. One loop over the
tracker's memory has neither problem, and costs zero API requests: RESYNC
re-announces the state deploywatch already holds, which is what a
SharedInformer's resync does too.

Rounds are due at whole multiples of the interval in wall-clock (Unix) time, and
each RESYNC's ``id`` names its round by that multiple (``deploywatch.model.ids``): two
replicas, or a replica before and after a restart, give the same re-announcement
the same id. The loop computes how long until the next round is due and sleeps
that long on the event loop's monotonic clock, so a wall-clock jump moves at most
one round; a clock stepped back gets the next round one interval later, numbered after
the last one, so no round's ids are printed twice. It yields to the event loop between batches, so a resync of
thousands of objects never holds back a real change for long.

Before each batch it asks its ``gate``, which may wait (while stdout does not
keep up: a RESYNC round must not fill the writer's memory, see
``deploywatch.output.writer``) and answers whether this replica may print at all: a
replica that Kopf's peering has paused prints nothing, RESYNC included, and the
rest of that round is skipped rather than printed late.
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
