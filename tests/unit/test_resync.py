"""resync.resync_forever: RESYNC for live objects only, in batches, until cancelled."""
import asyncio
import collections
import datetime
import functools
import io
import json
import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from deploywatch.model.tracker import Tracker
from deploywatch.output.writer import LineWriter
from deploywatch.runtime import resync
from deploywatch.runtime.resync import BATCH, resync_forever
from tests import builders

INTERVAL = 0.001
NOW = datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)


class Lines(io.BytesIO):
    """What the writer printed, as events; calls ``on_line`` with the count after each line."""

    def __init__(self, on_line: Callable[[int], None] = lambda count: None) -> None:
        super().__init__()
        self.on_line = on_line
        self.count = 0

    def write(self, data: Any, /) -> int:
        written = super().write(data)
        self.count += 1
        self.on_line(self.count)
        return written

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


deployment = functools.partial(builders.deployment, typed=False)


def tracker_with(count: int) -> Tracker:
    tracker = Tracker(redact=True, clock=lambda: NOW)
    for index in range(count):
        tracker.observe(None, deployment(f'd{index}', uid=f'u{index}'))
    return tracker


async def run_until(lines: Lines, tracker: Tracker, done: asyncio.Event) -> None:
    task = asyncio.create_task(resync_forever(tracker=tracker, writer=LineWriter(lines), interval=INTERVAL))
    try:
        await asyncio.wait_for(done.wait(), timeout=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_resync_prints_every_live_object_as_resync() -> None:
    tracker = tracker_with(3)
    tracker.observe('MODIFIED', deployment('d1', uid='u1', rv='2'))

    async def scenario() -> Lines:
        done = asyncio.Event()
        lines = Lines(lambda count: done.set() if count >= 6 else None)
        await run_until(lines, tracker, done)
        return lines

    events = asyncio.run(scenario()).events()
    assert {event['type'] for event in events} == {'RESYNC'}
    assert [event['uid'] for event in events[:6]] == ['u0', 'u1', 'u2'] * 2  # two rounds, in order
    assert events[1]['resourceVersion'] == '2'  # the latest state printed


def test_resync_of_an_empty_tracker_prints_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    rounds = [0]

    class Clock:  # the real wall clock, read once a round: how many rounds have begun
        @staticmethod
        def time() -> float:
            rounds[0] += 1
            return time.time()

    monkeypatch.setattr(resync, 'time', Clock)

    async def scenario() -> Lines:
        lines = Lines()
        task = asyncio.create_task(resync_forever(tracker=Tracker(redact=True), writer=LineWriter(lines),
                                                  interval=INTERVAL))
        while rounds[0] < 20:  # twenty rounds begun, nineteen of them done
            await asyncio.sleep(INTERVAL)
        assert not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return lines

    assert asyncio.run(scenario()).getvalue() == b''


def test_an_object_deleted_while_the_loop_yields_is_skipped() -> None:
    """Delete a late object from another task during the yield after the first batch."""
    total = BATCH + 100
    victim = BATCH + 50
    tracker = tracker_with(total)
    printed_at_deletion: list[int] = []

    async def scenario() -> Lines:
        first_batch_done = asyncio.Event()
        round_done = asyncio.Event()

        def on_line(count: int) -> None:
            if count == BATCH:
                first_batch_done.set()
            if count == total - 1:
                round_done.set()

        lines = Lines(on_line)

        async def delete_the_victim() -> None:
            await first_batch_done.wait()
            printed_at_deletion.append(lines.count)
            tracker.observe('DELETED', deployment(f'd{victim}', uid=f'u{victim}'))

        deleter = asyncio.create_task(delete_the_victim())
        await run_until(lines, tracker, round_done)
        await deleter
        return lines

    events = asyncio.run(scenario()).events()
    assert printed_at_deletion == [BATCH]  # deleted mid-round, while the loop yielded
    first_round = events[:total - 1]
    expected = [f'u{index}' for index in range(total) if index != victim]
    assert [event['uid'] for event in first_round] == expected
    assert all(event['type'] == 'RESYNC' for event in events)
    assert f'u{victim}' not in {event['uid'] for event in events}
    assert tracker.resync(f'u{victim}') is None


def test_no_resync_ever_follows_a_deleted() -> None:
    tracker = tracker_with(5)

    async def scenario() -> Lines:
        done = asyncio.Event()
        lines = Lines(lambda count: done.set() if count >= 12 else None)

        async def delete_some() -> None:
            await asyncio.sleep(0)
            tracker.observe('DELETED', deployment('d0', uid='u0'))
            tracker.observe('DELETED', deployment('d3', uid='u3'))

        await asyncio.gather(run_until(lines, tracker, done), delete_some())
        return lines

    events = asyncio.run(scenario()).events()
    assert len(events) >= 12
    assert {event['uid'] for event in events} == {'u1', 'u2', 'u4'}


def test_cancelling_the_task_stops_it() -> None:
    tracker = tracker_with(2)

    async def scenario() -> tuple[int, int, bool]:
        done = asyncio.Event()
        lines = Lines(lambda count: done.set() if count >= 4 else None)
        task = asyncio.create_task(
            resync_forever(tracker=tracker, writer=LineWriter(lines), interval=INTERVAL))
        await asyncio.wait_for(done.wait(), timeout=5)
        task.cancel()
        results = await asyncio.gather(task, return_exceptions=True)
        after_cancel = lines.count
        await asyncio.sleep(INTERVAL * 50)
        return after_cancel, lines.count, task.cancelled() and isinstance(results[0], asyncio.CancelledError)

    after_cancel, later, cancelled = asyncio.run(scenario())
    assert cancelled
    assert after_cancel >= 4
    assert later == after_cancel  # nothing printed once cancelled


def test_a_round_stops_when_stdout_is_behind_and_none_begins_before_it_kept_up_an_interval() -> None:
    """
    Issue 20: a round that waited for stdout to catch up refilled it each time it did, and a
    paused watch never got its request answered. Behind part way, a round stops there (not
    printed late); rounds are skipped until stdout has kept up for a whole interval; then the
    next round prints from its start.
    """
    tracker = tracker_with(BATCH + 10)
    # What kept_up answers: a whole round's worth of "long enough", then behind at one line of
    # the next round; then, one answer per round: behind, behind, caught up but not for an
    # interval yet, twice; then long enough again.
    answers = [math.inf] * (1 + BATCH + 10) + [math.inf] * (1 + BATCH + 5) + [0.0] + \
        [0.0, 0.0, INTERVAL / 2, INTERVAL / 2]
    rounds: collections.Counter[str] = collections.Counter()

    def kept_up() -> float:
        return answers.pop(0) if answers else math.inf

    async def scenario() -> Lines:
        done = asyncio.Event()
        lines = Lines(lambda count: done.set() if count >= 3 * BATCH + 25 else None)
        task = asyncio.create_task(resync_forever(tracker=tracker, writer=LineWriter(lines),
                                                  interval=INTERVAL, kept_up=kept_up, rounds=rounds))
        try:
            await asyncio.wait_for(done.wait(), timeout=5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return lines

    events = asyncio.run(scenario()).events()
    uids = [event['uid'] for event in events]
    whole = [f'u{index}' for index in range(BATCH + 10)]
    assert uids[:BATCH + 10] == whole
    assert uids[BATCH + 10:2 * BATCH + 15] == whole[:BATCH + 5]  # cut where it was behind
    assert uids[2 * BATCH + 15:3 * BATCH + 25] == whole  # the next round printed, from its start
    cut, then = (int(events[index]['id'].rsplit(':', 1)[1]) for index in (BATCH + 10, 2 * BATCH + 15))
    assert then >= cut + 5  # four rounds skipped between: none printed late
    assert rounds['cut'] == 1 and rounds['skipped'] == 4 and rounds['printed'] >= 2


def test_a_standby_prints_no_round() -> None:
    """A paused replica (a standby) prints no RESYNC: every round is skipped."""
    tracker = tracker_with(3)
    rounds: collections.Counter[str] = collections.Counter()

    async def scenario() -> Lines:
        lines = Lines()
        task = asyncio.create_task(resync_forever(tracker=tracker, writer=LineWriter(lines),
                                                  interval=INTERVAL, kept_up=lambda: 0.0, rounds=rounds))
        while rounds['skipped'] < 3:
            await asyncio.sleep(INTERVAL)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return lines

    assert asyncio.run(scenario()).count == 0
    assert rounds['printed'] == rounds['cut'] == 0


def test_a_wall_clock_stepped_back_never_prints_a_round_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Issue 20, item 8: the round was recomputed from the wall clock after each sleep, so a clock
    stepped back (NTP, a VM restored) printed the same round again, under the same ids.
    """
    wall = [1_000_000.0]

    class Clock:
        @staticmethod
        def time() -> float:
            wall[0] += INTERVAL / 4  # time moves on between looks
            return wall[0]

    monkeypatch.setattr(resync, 'time', Clock)
    tracker = tracker_with(2)

    async def scenario() -> Lines:
        done = asyncio.Event()

        def on_line(count: int) -> None:
            if count == 2:
                wall[0] -= 50 * INTERVAL  # stepped back, after the first round
            if count >= 6:
                done.set()
        lines = Lines(on_line)
        await run_until(lines, tracker, done)
        return lines

    rounds = [int(event['id'].rsplit(':', 1)[1]) for event in asyncio.run(scenario()).events()]
    assert rounds[:6] == sorted(rounds[:6]) and len(set(rounds[:6])) == 3, rounds  # three rounds, each later
