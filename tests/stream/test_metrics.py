"""
``/metrics`` (DEPLOYWATCH_METRICS_PORT) against what stdout shows, on both clusters.

The metrics are scraped while the scenario runs and parsed with prometheus_client's
parser. A count of lines printed is compared with the lines the test read between
two reads of stdout that agree (a line is counted once written, and read a moment
later): then the scrape in between must show exactly those counts.
"""
import collections
import pathlib
import time

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import Event, OperatorProcess, eventually, of
from tests.harness.probes import Samples, free_port, scrape, value

WATCHED = ('ADDED', 'MODIFIED', 'DELETED')  # the watch event types that print a line of their own


def _printed(events: list[Event]) -> collections.Counter[tuple[str, str]]:
    return collections.Counter((e['type'], 'true' if e.get('inferred') else 'false') for e in events)


def _counted(samples: Samples) -> collections.Counter[tuple[str, str]]:
    return collections.Counter({(dict(labels)['type'], dict(labels)['inferred']): int(count)
                                for (name, labels), count in samples.items()
                                if name == 'deploywatch_events_total' and count})


def _from_watch(events: list[Event]) -> dict[str, int]:
    """Lines printed for watch events, by type: each is one event the watch read."""
    watched = [e['type'] for e in events if not (e.get('initial') or e.get('inferred'))]
    return {kind: watched.count(kind) for kind in WATCHED}


def _heard(samples: Samples) -> dict[str, int]:
    return {kind: int(value(samples, 'deploywatch_watch_events_total', {'type': kind})) for kind in WATCHED}


def _agreeing(operator: OperatorProcess, port: int) -> Samples:
    """
    A scrape whose counts equal the lines read from stdout around it: lines printed by type,
    and watch events read (each printed one line), with none waiting to be written.
    """
    found: list[Samples] = []

    def agree() -> bool:
        before = list(operator.events)
        samples = scrape(port)
        after = list(operator.events)
        if (_printed(before) == _printed(after) == _counted(samples) and _from_watch(after) == _heard(samples)
                and value(samples, 'deploywatch_stdout_pending_bytes') == 0):
            found.append(samples)
            return True
        return False

    last = scrape(port)
    eventually(agree, what=f'metrics equal to stdout: {_printed(operator.events)}, '
                           f'{_from_watch(operator.events)} vs {_counted(last)}, {_heard(last)}')
    return found[-1]


def test_the_metrics_count_what_stdout_shows(cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    for name in ('alpha', 'beta'):
        cluster.create(deployment(name, namespace=namespace))
    port = free_port()
    operator = start_operator(f'--namespace={namespace}', env={'DEPLOYWATCH_METRICS_PORT': str(port),
                                                                 'DEPLOYWATCH_RESYNC_SECONDS': '1'})
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', 2, what='two initial ADDED')
    listed = scrape(port)  # during the scenario: the watch is live, the first listing is done
    assert value(listed, 'deploywatch_listed_objects_total') == 2
    assert value(listed, 'deploywatch_watches') == 1
    assert value(listed, 'deploywatch_relists_total') == 0

    gamma = cluster.create(deployment('gamma', namespace=namespace))
    patched = cluster.patch(namespace, 'alpha', {'metadata': {'labels': {'tier': 'web'}}})
    cluster.delete(namespace, 'beta')
    operator.wait_for(of('gamma', 'ADDED', resourceVersion=gamma['metadata']['resourceVersion']),
                      what='ADDED')
    operator.wait_for(of('alpha', 'MODIFIED', resourceVersion=patched['metadata']['resourceVersion']),
                      what='MODIFIED')
    operator.wait_for(of('beta', 'DELETED'), what='DELETED')
    operator.wait_for(of('gamma', 'RESYNC'), what='a RESYNC round after the changes')

    samples = _agreeing(operator, port)
    assert {kind for kind, _ in _printed(operator.events)} == {'ADDED', 'MODIFIED', 'DELETED', 'RESYNC'}
    # Read from the watch: the changes (a real controller adds its own), each printed once.
    assert all(_heard(samples)[kind] >= 1 for kind in WATCHED), _heard(samples)
    assert value(samples, 'deploywatch_deployments_tracked') == 2
    assert value(samples, 'deploywatch_events_dropped_total') == 0
    assert value(samples, 'deploywatch_watch_stalest_seconds') < 60
    assert time.time() - value(samples, 'deploywatch_last_event_timestamp_seconds') < 120
    assert value(samples, 'deploywatch_stdout_blocked_seconds_total') > 0
    assert value(samples, 'process_resident_memory_bytes') > 0  # prometheus_client's own collectors


def test_inferred_deletions_are_counted_apart(cluster: Cluster, start_operator: StartOperator,
                                              tmp_path: pathlib.Path) -> None:
    namespace = cluster.new_namespace()
    for name in ('kept', 'gone'):
        cluster.create(deployment(name, namespace=namespace))
    state = {'DEPLOYWATCH_STATE_FILE': str(tmp_path / 'state.json'), 'DEPLOYWATCH_RESYNC_SECONDS': '0'}
    first = start_operator(f'--namespace={namespace}', env=state)
    first.wait_for_count(lambda e: e['type'] == 'ADDED', 2, what='two initial ADDED')
    first.stop()
    cluster.delete(namespace, 'gone')  # while nobody watches

    port = free_port()
    second = start_operator(f'--namespace={namespace}', env={**state, 'DEPLOYWATCH_METRICS_PORT': str(port)})
    second.wait_for(of('gone', 'DELETED', inferred=True), what='the inferred DELETED')

    samples = _agreeing(second, port)
    assert value(samples, 'deploywatch_events_total', {'type': 'DELETED', 'inferred': 'true'}) == 1
    assert value(samples, 'deploywatch_events_total', {'type': 'DELETED', 'inferred': 'false'}) == 0
    assert value(samples, 'deploywatch_deployments_tracked') == 1
