"""
Issue 20, item 6: watches that cannot resume are relisted at a pace, not in a storm.

A server that answers every watch with 410 Gone (a lagging replica, a cache that cannot
catch up) gave one full LIST after another: 30 expiries, 30 LISTs in 0.09 s. Both ways
a watch expires lead to a relist (``deploywatch.kube.loop``): the 410 as the HTTP status
of the watch request (``_failed``) and the 410 as an ERROR event in the stream; here the
watches meet both, one after the other, while Deployments change. What is read is what
an operator of the cluster could read: the API server's request log (the LISTs and when
they came) and deploywatch's ``/metrics``; the stream is held to the server's truth.
(``test_disconnects.py`` has the same pace for ERROR events alone, without the metrics.)
"""
import itertools

import pytest

from deploywatch.testing import ServerThread
from tests.harness.driver import Driver
from tests.harness.operator import eventually, of
from tests.harness.probes import free_port, scrape, value
from tests.harness.reporting import report
from tests.harness.truth import wait_until_consistent
from tests.robustness.conftest import Start, is_listing

HTTP_410 = 2  # watches answered 410 as their HTTP status
EVENT_410 = 2  # then watches answered 200 and one ERROR event with a 410 Status
WAITS = (1.0, 2.0, 4.0)  # RelistPace: the first relist at once, then 1 s, doubling


def test_watches_expired_again_and_again_relist_after_a_growing_wait_and_lose_nothing(
        apiserver: ServerThread, driver: Driver, start: Start, request: pytest.FixtureRequest) -> None:
    """One listing per expiry, each after a longer wait than the one before."""
    namespace = driver.namespace('pace')
    for name in ('web', 'gone'):
        driver.create(namespace, name)
    port = free_port()
    operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0',
                                                      'DEPLOYWATCH_METRICS_PORT': str(port)})
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', 2, what='two initial ADDED')

    def listings() -> list[float]:
        requests = list(apiserver.server.log.requests)
        return [r.time for r in requests if is_listing(r) and r.namespace == namespace]

    assert len(listings()) == 1 and value(scrape(port), 'deploywatch_relist_waits_total') == 0
    driver.faults.answer(410, times=HTTP_410, verbs=frozenset({'watch'}))
    driver.faults.expire_watch(times=EVENT_410)
    driver.faults.cut_watch(after=0)  # the open watch ends at its next line; the next ones expire
    driver.patch(namespace, 'web', {'metadata': {'labels': {'during': 'expiries'}}})
    driver.delete(namespace, 'gone')
    driver.create(namespace, 'born')
    expiries = HTTP_410 + EVENT_410
    eventually(lambda: len(listings()) >= 1 + expiries, what=f'{expiries} relists', timeout=60)

    # Once the faults are used up, the watch goes on: a change now comes from it, not a relist.
    sentinel = driver.patch(namespace, 'web', {'metadata': {'labels': {'after': 'expiries'}}})
    operator.wait_for(of('web', 'MODIFIED', resourceVersion=sentinel['metadata']['resourceVersion']),
                      what='the change after the expiries, from the watch')
    assert wait_until_consistent(operator, driver.truth) == []
    samples = scrape(port)

    relists = listings()[1:]
    gaps = [later - earlier for earlier, later in itertools.pairwise(relists)]
    report(request.config, 'relist pace', {
        'expiries': expiries, 'relists': len(relists),
        'gaps': ' '.join(f'{gap:.3f}s' for gap in gaps),
        'relist waits': int(value(samples, 'deploywatch_relist_waits_total'))})
    assert driver.faults.fired == ['watch:cut-clean-after-0', *['watch:410'] * HTTP_410,
                                   *['watch:410'] * EVENT_410], driver.faults.fired
    assert len(relists) == expiries, gaps  # one listing per expiry, none since the watch went on
    assert all(gap >= wait for gap, wait in zip(gaps, WAITS, strict=True)), gaps
    assert value(samples, 'deploywatch_relist_waits_total') == len(WAITS)
    assert value(samples, 'deploywatch_relists_total') == expiries
    assert value(samples, 'deploywatch_watch_restarts_total', {'reason': 'expired'}) == expiries
    assert value(samples, 'deploywatch_api_errors_total', {'code': '410'}) == expiries
    # The changes made while every watch expired were found by the relists (inferred).
    assert sorted((e['type'], e['name']) for e in operator.matching(lambda e: e.get('inferred', False))) == [
        ('DELETED', 'gone'), ('MODIFIED', 'web')]
