"""
Odd watch streams: a response that ends cleanly in the middle of a line, and one that
answers 200 and closes at once, again and again.

A stream cut mid-line by a dropped connection is a payload error that Kopf's watch
swallows (test_disconnects covers it). Ended *cleanly* after half a line (a proxy that
closes the chunked response as if it were complete), the last bytes reach Kopf's line
decoder without their newline, and json/UTF-8 decoding fails with a ``ValueError``
(``UnicodeDecodeError`` when the cut falls inside a multi-byte character, as a real
server writes them unescaped). Both must resume from the last resourceVersion, losing
nothing. A server that closes every watch at once must be re-watched with a backoff,
not in a hot loop: the request log counts the watches.
"""
import time

import pytest

from deploywatch.testing.faults import Cut
from tests.harness.driver import Driver
from tests.harness.operator import OperatorProcess, of
from tests.harness.truth import wait_until_consistent
from tests.robustness.conftest import Start

NON_ASCII = {'metadata': {'annotations': {'owner': 'équipe café ✓'}}}
EMPTY_WINDOW = 3.0  # seconds of empty watch answers counted


def _started(driver: Driver, start: Start, prefix: str) -> tuple[str, OperatorProcess]:
    namespace = driver.namespace(prefix)
    for name in ('a', 'b', 'c'):
        driver.create(namespace, name)
    operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0'})
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', 3, what='three initial ADDED')
    return namespace, operator


@pytest.mark.parametrize('how', [Cut.HALF_LINE, Cut.MID_CHAR])
def test_a_stream_ending_cleanly_in_the_middle_of_a_line_is_resumed_without_loss(
        driver: Driver, start: Start, how: Cut) -> None:
    namespace, operator = _started(driver, start, 'halfline')

    driver.faults.cut_watch(after=1, how=how)
    driver.patch(namespace, 'a', NON_ASCII)
    driver.patch(namespace, 'b', NON_ASCII)  # its line is cut
    driver.patch(namespace, 'c', NON_ASCII)
    driver.delete(namespace, 'a')

    assert wait_until_consistent(operator, driver.truth) == []
    assert driver.faults.fired == [f'watch:cut-{how.value}-after-1']
    b = operator.wait_for(of('b', 'MODIFIED'), what='the cut change, from the resumed watch')
    assert b['object']['metadata']['annotations']['owner'] == 'équipe café ✓'
    assert operator.matching(lambda e: 'inferred' in e) == []  # resumed, not relisted
    assert operator.process.poll() is None
    assert 'Traceback' not in operator.stderr


def _watches(driver: Driver, since: float) -> int:
    return sum(1 for r in list(driver.server.server.log.requests)
               if r.verb == 'watch' and r.resource == 'deployments' and r.time >= since)


def test_watches_answered_empty_again_and_again_are_retried_with_a_backoff(
        driver: Driver, start: Start) -> None:
    namespace, operator = _started(driver, start, 'empty')

    began = time.time()
    driver.faults.empty_watch(times=1_000_000)
    driver.faults.cut_watch(after=0)  # the open watch ends; every next one answers empty
    driver.scale(namespace, 'a', 4)
    driver.delete(namespace, 'b')
    driver.create(namespace, 'd')
    time.sleep(max(0.0, began + EMPTY_WINDOW - time.time()))  # the fault lasts: its watches are counted
    watches = _watches(driver, began)
    driver.faults.clear()

    assert wait_until_consistent(operator, driver.truth) == []
    print(f'odd-streams: empty watch answers for {EMPTY_WINDOW:.0f}s: {watches} watch requests '
          f'({watches / EMPTY_WINDOW:.1f}/s)')
    assert 1 <= watches <= 4, watches  # 1 s, then 2 s between attempts: backed off, not a hot loop
    assert operator.matching(lambda e: 'inferred' in e) == []  # resumed from its version, not relisted
    assert operator.process.poll() is None
    stderr = operator.stderr
    assert 'Traceback' not in stderr
    # One warning per retry: the watches counted, and the one open when the fault came (cut at once).
    assert 0 < stderr.count('ended at once') <= watches + 1, stderr
