"""
Behaviour 6: RESYNC re-announces live Deployments, never deleted ones, and never delays a change.

Intervals here are short so the tests are quick; what is asserted is which lines
appear and in what order, never how long anything took. In a real cluster the
deployment controller's status writes land between (and after) the test's changes, so
a RESYNC is held against the last line printed for that object before it, and the
test's change is found by the resourceVersion its write returned.
"""
import pathlib
import time

import pytest

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import Event, OperatorProcess, eventually, of
from tests.harness.probes import free_port, scrape, value
from tests.harness.reporting import report
from tests.harness.wallclock import WallClock


def last_printed_before(operator: OperatorProcess, event: Event) -> Event:
    """The line printed for the same object just before ``event``."""
    before = operator.events[:operator.events.index(event)]
    return [e for e in before if e['uid'] == event['uid']][-1]


def test_resync_reannounces_live_deployments_and_never_a_deleted_one(
        cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('stays', namespace=namespace))
    cluster.create(deployment('goes', namespace=namespace))
    operator = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0.5'})

    operator.wait_for_count(of('stays', 'RESYNC'), 2, what='two rounds of RESYNC')
    resync = operator.wait_for(of('goes', 'RESYNC'), what='RESYNC of the one about to go')
    assert resync['object'] == last_printed_before(operator, resync)['object']
    if cluster.emulated:  # nothing changes it: the state it was listed with
        assert resync['object'] == operator.matching(of('goes', 'ADDED'))[0]['object']

    cluster.delete(namespace, 'goes')
    deleted = operator.wait_for(of('goes', 'DELETED'), what='DELETED')
    after = operator.events.index(deleted)
    operator.wait_for_count(of('stays', 'RESYNC'), 2, what='two more rounds after the delete', after=after)

    assert not [e for e in operator.events[after:] if e['name'] == 'goes' and e['type'] != 'DELETED']


def test_resync_carries_the_latest_state(cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('scaled', namespace=namespace, replicas=1))
    operator = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0.5'})
    operator.wait_for(of('scaled', 'RESYNC'), what='first RESYNC')

    version = cluster.patch(namespace, 'scaled', {'spec': {'replicas': 7}})['metadata']['resourceVersion']
    modified = operator.wait_for(of('scaled', 'MODIFIED', resourceVersion=version), what='MODIFIED')
    resync = operator.wait_for(of('scaled', 'RESYNC'), what='RESYNC after the change',
                               after=operator.events.index(modified))
    assert resync['summary']['replicas'] == 7
    latest = last_printed_before(operator, resync)  # the change, or a status write of the controller after it
    assert resync['resourceVersion'] == latest['resourceVersion'] and resync['object'] == latest['object']
    if cluster.emulated:
        assert latest is modified


def test_resync_zero_never_resyncs(cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('quiet', namespace=namespace))
    silent = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0'})
    control = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0.2'})

    # While the control prints five rounds, the one with resync off prints none.
    silent.wait_for(of('quiet', 'ADDED'), what='ADDED')
    control.wait_for_count(of('quiet', 'RESYNC'), 5, what='five RESYNC rounds of the control')
    assert silent.matching(lambda e: e['type'] == 'RESYNC') == []


def test_a_change_during_a_long_interval_is_printed_without_waiting_for_it(
        cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('busy', namespace=namespace))
    # Rounds are due at whole multiples of the interval in Unix time, so any fixed interval has a
    # round due during some run (3600 s: every run crossing the hour). The seconds since the epoch,
    # now, are an interval whose first round has just passed and whose next one is decades away.
    interval = str(int(time.time()))
    operator = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': interval})
    operator.wait_for(of('busy', 'ADDED'), what='ADDED')

    version = cluster.patch(namespace, 'busy', {'spec': {'replicas': 2}})['metadata']['resourceVersion']

    # The bound is the harness's usual one, far below the interval: the change did not wait for a
    # resync tick, and no RESYNC was printed before it.
    operator.wait_for(of('busy', 'MODIFIED', resourceVersion=version), what='MODIFIED long before any resync')
    assert operator.matching(lambda e: e['type'] == 'RESYNC') == []


BEHIND = 'stdout is not keeping up'


def test_a_change_is_printed_while_a_slow_reader_takes_resync_rounds(
        cluster: Cluster, start_operator: StartOperator) -> None:
    """
    Issue 20: RESYNC rounds bigger than stdout's spool, read more slowly than they come. Each
    round waited for the spool to drain and refilled it at once, closing the paused watch's
    request before its answer: a change waited as long as the rounds went on. Now a round
    stops when stdout is behind and none begins before it has kept up for an interval. On a
    real server it also found a pause whose cancel came after the answer and ended the watch
    for good (tests/unit/test_streaming.py pins it).
    """
    namespace = cluster.new_namespace('slow')
    cluster.create(deployment('first', namespace=namespace, replicas=0))
    big = 30  # ~6 MB a round: past the spool's 4 MiB, and any pipe
    cluster.create_big(namespace, big)
    port = free_port()
    operator = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0.5',
                                                               'DEPLOYWATCH_METRICS_PORT': str(port)})
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', big + 1, what='every ADDED')
    behind = operator.stderr.count(BEHIND)  # the listing itself may have been behind
    operator.read_slowly(0.05)  # ~4 MB/s: a third of what the rounds bring
    eventually(lambda: operator.stderr.count(BEHIND) > behind, what='stdout behind the rounds')
    read = len(operator.events)

    version = cluster.patch(namespace, 'first', {'metadata': {'labels': {'changed': 'yes'}}})
    operator.wait_for(of('first', 'MODIFIED', resourceVersion=version['metadata']['resourceVersion']),
                      what='the change, between RESYNC rounds', after=read)
    rounds = scrape(port)  # the rounds went on meanwhile, giving way
    assert value(rounds, 'deploywatch_resync_rounds_total', {'outcome': 'cut'}) >= 1
    assert value(rounds, 'deploywatch_resync_rounds_total', {'outcome': 'skipped'}) >= 1


def _round(event: Event) -> int:
    """A RESYNC's round, the last part of its id (``deploywatch.model.ids``)."""
    return int(event['id'].rsplit(':', 1)[1])


def test_a_wall_clock_stepped_back_never_prints_a_round_again(
        cluster: Cluster, start_operator: StartOperator, tmp_path: pathlib.Path,
        request: pytest.FixtureRequest) -> None:
    """
    Issue 20, item 8: the round was recomputed from the wall clock after each (monotonic)
    sleep, so a clock stepped back by NTP or a restored VM printed rounds again, under the
    same ids. Here the operator's own wall clock (only its) goes back three intervals.
    """
    interval, back = 1, 3
    namespace = cluster.new_namespace()
    cluster.create(deployment('steady', namespace=namespace))
    clock = WallClock(tmp_path / 'wallclock')
    operator = start_operator(f'--namespace={namespace}',
                              env={'DEPLOYWATCH_RESYNC_SECONDS': str(interval), **clock.env()})
    operator.wait_for_count(of('steady', 'RESYNC'), back + 1, what='rounds before the step')

    clock.step(-back * interval)
    after = len(operator.events)
    operator.wait_for_count(of('steady', 'RESYNC'), back + 1, what='rounds after the step', after=after)

    before = [_round(e) for e in operator.events[:after] if of('steady', 'RESYNC')(e)]
    resyncs = operator.matching(of('steady', 'RESYNC'))
    ids, rounds = [e['id'] for e in resyncs], [_round(e) for e in resyncs]
    report(request.config, 'wall clock stepped back', {
        'rounds before the step': ' '.join(map(str, before)),
        'after': ' '.join(map(str, rounds[len(before):]))})
    assert len(set(ids)) == len(ids), f'ids printed twice: rounds {before} then {rounds[len(before):]}'
    assert rounds == sorted(set(rounds)), rounds  # strictly increasing: each round later than the last
