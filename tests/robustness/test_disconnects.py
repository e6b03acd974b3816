"""
Guarantees 1-3: disconnects, 410 relists and outages lose nothing and invent nothing.

Each test compares the operator's whole stdout with the emulated server's final
state (tests/harness/truth.py), after making changes while the stream was broken.
"""
import contextlib
from collections.abc import Iterator

import pytest

from deploywatch.testing.faults import Cut
from tests.harness.driver import Driver
from tests.harness.operator import OperatorProcess, eventually, of
from tests.harness.truth import wait_until_consistent
from tests.robustness.conftest import Start

NOTICED = 'cannot be reached'  # deploywatch's warning at the first failed connection of an outage
OUTAGE_BOUND = 120.0  # refusing connections for this long at most: the operator meets it long before


@contextlib.contextmanager
def outage(driver: Driver, operator: OperatorProcess) -> Iterator[None]:
    """
    The server refuses connections from the block's start until the operator has been seen
    failing to connect (its one warning per outage, at the first failed connection: a refused
    one, or a request cut by the drop; Kopf's own lines after the first are filtered out), then
    answers again at once: the outage ends on what the operator did, not after a fixed time
    that its retries (1 s to resume a watch, Kopf's 0.5, 1, 2 s...) may or may not have fallen into.
    """
    noticed = operator.stderr.count(NOTICED)
    driver.server.outage(OUTAGE_BOUND)
    yield
    eventually(lambda: operator.stderr.count(NOTICED) > noticed, what='the operator noticing the outage')
    driver.server.outage(0)  # back now


def _three(driver: Driver, start: Start, *, resync: str = '0') -> tuple[str, OperatorProcess]:
    namespace = driver.namespace('faults')
    for name in ('a', 'b', 'c'):
        driver.create(namespace, name)
    operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': resync})
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', 3, what='three initial ADDED')
    return namespace, operator


@pytest.mark.parametrize('how', list(Cut))
def test_a_broken_watch_stream_is_resumed_without_loss_or_duplicates(
        driver: Driver, start: Start, how: Cut) -> None:
    namespace, operator = _three(driver, start)

    driver.faults.cut_watch(after=2, how=how)
    driver.scale(namespace, 'a', 2)
    driver.new_image(namespace, 'b')
    driver.roll_out(namespace, 'c')
    driver.create(namespace, 'd')
    driver.delete(namespace, 'b')
    driver.scale(namespace, 'a', 5)

    assert wait_until_consistent(operator, driver.truth) == []
    assert driver.faults.fired == [f'watch:cut-{how.value}-after-2']
    assert len(operator.matching(lambda e: e['type'] == 'ADDED' and e['initial'])) == 3
    assert operator.matching(lambda e: 'inferred' in e) == []  # resumed, not relisted


def test_changes_during_an_outage_are_reported_when_it_ends(driver: Driver, start: Start) -> None:
    namespace, operator = _three(driver, start)

    with outage(driver, operator):
        driver.scale(namespace, 'a', 3)
        driver.delete(namespace, 'b')
        driver.create(namespace, 'd')

    assert wait_until_consistent(operator, driver.truth) == []
    assert operator.stderr.count('answers again after') == 1
    assert operator.wait_for(of('b', 'DELETED'), what='DELETED')['object']['metadata']['name'] == 'b'


def test_after_410_gone_the_relist_reports_exactly_what_changed(driver: Driver, start: Start) -> None:
    namespace, operator = _three(driver, start, resync='0.3')
    before = len(operator.events)

    with outage(driver, operator):
        driver.scale(namespace, 'a', 4)
        driver.delete(namespace, 'b')
        driver.create(namespace, 'd')
        driver.compact()  # the watch cannot resume: 410 Gone, then Kopf lists again

    assert wait_until_consistent(operator, driver.truth) == []
    assert operator.stderr.count('answers again after') == 1
    changes = [(e['type'], e['name'], e.get('inferred'), e.get('initial'))
               for e in operator.events[before:] if e['type'] != 'RESYNC']
    assert sorted(changes, key=str) == sorted([
        ('MODIFIED', 'a', True, None),
        ('DELETED', 'b', True, None),
        ('ADDED', 'd', None, True),
    ], key=str)
    deleted = operator.wait_for(of('b', 'DELETED'), what='inferred DELETED')
    assert deleted['object']['metadata']['name'] == 'b'  # the last known state
    # Its resync stopped: RESYNC rounds go on for the others, never for b again.
    after = operator.events.index(deleted)
    operator.wait_for_count(of('c', 'RESYNC'), 2, what='two RESYNC rounds after', after=after)
    assert [e for e in operator.events[after:] if e['name'] == 'b' and e is not deleted] == []


def test_a_410_with_nothing_changed_prints_nothing(driver: Driver, start: Start) -> None:
    namespace, operator = _three(driver, start)
    before = len(operator.events)

    driver.faults.expire_watch()
    driver.faults.cut_watch(after=0)  # the current watch ends; the next one answers 410
    driver.create(namespace, 'sentinel')

    operator.wait_for(of('sentinel', 'ADDED'), what='sentinel after the relist')
    assert 'watch:410' in driver.faults.fired
    assert [e['name'] for e in operator.events[before:]] == ['sentinel']
    assert wait_until_consistent(operator, driver.truth) == []


def test_thirty_seconds_of_refused_connections_warn_once_and_lose_nothing(
        driver: Driver, start: Start) -> None:
    namespace, operator = _three(driver, start)

    driver.server.outage(30.0)
    driver.scale(namespace, 'a', 2)
    driver.delete(namespace, 'b')
    driver.create(namespace, 'd')
    driver.roll_out(namespace, 'c')

    assert wait_until_consistent(operator, driver.truth) == []
    assert operator.process.poll() is None
    stderr = operator.stderr
    assert stderr.count('cannot be reached') == 1, stderr
    assert stderr.count('answers again after') == 1, stderr
    assert stderr.count('Request attempt') <= 4, stderr  # Kopf's first failure(s), not one per retry
    assert 'Traceback' not in stderr
