"""
The periodic RESYNC, as one operator-wide task instead of per-object timers.

Kopf's ``@kopf.timer`` would be the obvious tool, but it is per object: it adds a
finalizer by default (making deploywatch block deletions), and without the
finalizer Kopf never stops the timer of a deleted object. One loop over the
tracker's memory has neither problem, and costs zero API requests: RESYNC
re-announces the state deploywatch already holds, which is what a
SharedInformer's resync does too.

The loop sleeps on the event loop's monotonic clock, so wall-clock jumps do not
matter, and it yields to the event loop between batches, so a resync of
thousands of objects never holds back a real change for long.
"""
import asyncio

from deploywatch.output import LineWriter
from deploywatch.tracker import Tracker

BATCH = 200  # objects printed between two yields to the event loop


async def resync_forever(*, tracker: Tracker, writer: LineWriter, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        for index, key in enumerate(tracker.uids()):
            if index and index % BATCH == 0:
                await asyncio.sleep(0)
            event = tracker.resync(key)  # None if deleted since the snapshot
            if event is not None:
                writer.write(event)
