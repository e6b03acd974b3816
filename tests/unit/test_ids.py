"""ids: an event's id from the change alone; RESYNC rounds as wall-clock slots that replicas agree on."""
import asyncio
import datetime
import functools
from typing import Any

import pytest

from deploywatch.model import ids
from deploywatch.model.tracker import Tracker
from deploywatch.output.writer import LineWriter
from deploywatch.runtime import resync
from deploywatch.runtime.resync import resync_forever
from tests import builders
from tests.unit.test_resync import Lines

NOW = datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC)


raw = functools.partial(builders.deployment, typed=False, namespace='prod')


def test_the_id_names_uid_version_and_type() -> None:
    assert ids.event_id(type='MODIFIED', uid='u-1', resource_version='7', namespace='n',
                        name='a') == 'u-1:7:MODIFIED'
    assert ids.event_id(type='RESYNC', uid='u-1', resource_version='7', namespace='n', name='a',
                        slot=42) == 'u-1:7:RESYNC:42'
    assert ids.event_id(type='ADDED', uid=None, resource_version=None, namespace='n',
                        name='a') == 'n/a::ADDED'


def test_two_trackers_give_the_same_change_the_same_id_however_they_saw_it() -> None:
    """One replica saw the watch events; another, started later, listed the result: same ids."""
    first, second = Tracker(redact=True, clock=lambda: NOW), Tracker(redact=True)
    first.observe(None, raw(rv='1'))
    watched = first.observe('MODIFIED', raw(rv='2'))
    listed = second.observe(None, raw(rv='2'))
    assert watched is not None and listed is not None
    assert watched['id'] == 'u-1:2:MODIFIED' and listed['id'] == 'u-1:2:ADDED'
    relisted = Tracker(redact=True)
    relisted.observe(None, raw(rv='1'))
    inferred = relisted.observe(None, raw(rv='2'))  # a relist found it changed: inferred, same rule
    assert inferred is not None and inferred['inferred'] is True and inferred['id'] == watched['id']
    gone = first.observe('DELETED', raw(rv='3'))
    assert gone is not None and gone['id'] == 'u-1:3:DELETED'


def test_a_recreated_deployment_gets_new_ids() -> None:
    tracker = Tracker(redact=True)
    old = tracker.observe(None, raw(rv='5', uid='u-old'))
    new = tracker.observe('ADDED', raw(rv='5', uid='u-new'))
    assert old is not None and new is not None and old['id'] != new['id']


@pytest.mark.parametrize(('now', 'interval', 'expected'), [
    (1000.0, 600.0, (200.0, 2)),
    (1199.999, 600.0, (0.001, 2)),
    (1200.0, 600.0, (600.0, 3)),
    (0.05, 0.1, (0.05, 1)),
])
def test_next_round_is_the_next_whole_multiple_of_the_interval(
        now: float, interval: float, expected: tuple[float, int]) -> None:
    delay, slot = ids.next_round(now, interval)
    assert (round(delay, 6), slot) == expected


def test_replicas_started_apart_wait_for_the_same_round() -> None:
    """Started 4 minutes apart (and half a second off), two replicas resync in the same slot."""
    first = ids.next_round(1_700_000_000.0, 600.0)
    second = ids.next_round(1_700_000_240.5, 600.0)
    assert first[1] == second[1]
    assert 1_700_000_000.0 + first[0] == pytest.approx(1_700_000_240.5 + second[0])


def test_resync_ids_carry_the_round_and_two_replicas_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two replicas started at different moments of one slot print its round under the same ids."""
    wall = [1_700_000_000.03]  # early in the slot that ends at 1_700_000_000.2: round 8_500_000_001
    reads: list[float] = []

    class Clock:  # the wall clock, as resync reads it: moved by the test alone, not by the machine
        @staticmethod
        def time() -> float:
            reads.append(wall[0])
            return wall[0]

    monkeypatch.setattr(resync, 'time', Clock)
    trackers = [Tracker(redact=True), Tracker(redact=True)]
    for tracker in trackers:
        tracker.observe(None, raw(rv='9'))

    async def one_round(tracker: Tracker) -> list[dict[str, Any]]:
        done = asyncio.Event()
        lines = Lines(on_line=lambda _: done.set())
        task = asyncio.create_task(resync_forever(tracker=tracker, writer=LineWriter(lines), interval=0.2))
        await asyncio.wait_for(done.wait(), timeout=5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return lines.events()

    async def both() -> list[list[dict[str, Any]]]:
        first = asyncio.create_task(one_round(trackers[0]))
        while not reads:  # the first replica has read the clock and sleeps until its round
            await asyncio.sleep(0)
        wall[0] = 1_700_000_000.15  # the second replica starts later in the same slot
        second = asyncio.create_task(one_round(trackers[1]))
        return [await first, await second]

    first, second = asyncio.run(both())
    assert reads[:2] == [1_700_000_000.03, 1_700_000_000.15]
    assert first[0]['id'] == second[0]['id'] == 'u-1:9:RESYNC:8500000001'
