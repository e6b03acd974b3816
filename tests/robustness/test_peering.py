"""
Kopf peering: a replica that another one (of higher priority) has paused prints nothing.

Kopf pauses the Deployment watches of a paused replica; deploywatch's own output must
pause with them: no RESYNC from its memory, and none of the lines it had not yet
written when it lost the lead (its reader was slow), since the replica that leads now
prints the current state itself. The emulated API server serves Kopf's
ClusterKopfPeering for these tests (tests/deploy/peering.py).
"""
import pathlib
from collections.abc import Iterator

import pytest

from deploywatch.testing import ServerThread
from tests.deploy import peering
from tests.harness.driver import Driver
from tests.harness.operator import OperatorProcess, eventually, of
from tests.harness.truth import wait_until_consistent
from tests.robustness.conftest import Start

PEERING = 'deploywatch'
RESYNC = '0.3'


@pytest.fixture(autouse=True)
def peering_served(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> Iterator[None]:
    """Before the emulated server starts (autouse fixtures come first): it serves ClusterKopfPeerings."""
    peering.serve(monkeypatch, tmp_path)
    yield


@pytest.fixture
def replica(apiserver: ServerThread, driver: Driver, start: Start, tmp_path: pathlib.Path) -> Start:
    body = {'apiVersion': 'kopf.dev/v1', 'kind': 'ClusterKopfPeering', 'metadata': {'name': PEERING}}
    driver.server.call(driver.store.create, peering.CLUSTER_PEERINGS, '', body, manager='kubectl')
    admin = apiserver.kubeconfig(tmp_path / 'peering.kubeconfig')  # peering patches: beyond base RBAC

    def replica(priority: int, **env: str) -> OperatorProcess:
        return start('--all-namespaces', f'--peering={PEERING}', f'--priority={priority}',
                     env={'DEPLOYWATCH_RESYNC_SECONDS': RESYNC, **env}, kubeconfig=admin)
    return replica


def _paused(operator: OperatorProcess) -> bool:
    return 'Pausing operations in favour of' in operator.stderr


def test_a_replica_paused_by_a_higher_priority_prints_no_resync(driver: Driver, replica: Start) -> None:
    namespace = driver.namespace('peers')
    driver.create(namespace, 'web')
    first = replica(0)
    first.wait_for_count(of('web', 'RESYNC'), 2, what='the only replica printing, RESYNC included')

    second = replica(100)  # a higher priority: it leads, the first one pauses
    second.wait_for(of('web', 'ADDED'), what='the new leader listing')
    eventually(lambda: _paused(first), what='the first replica paused by Kopf')
    after = len(second.matching(of('web', 'RESYNC')))
    second.wait_for_count(of('web', 'RESYNC'), after + 1, what='a RESYNC round of the leader')
    printed = len(first.events)
    # Three more rounds of the leader (0.3 s each): the paused one would have printed two at least.
    second.wait_for_count(of('web', 'RESYNC'), after + 4, what='three more rounds of the leader')
    assert len(first.events) == printed, first.events[printed:]
    assert 'Traceback' not in first.stderr


def test_lines_buffered_when_the_lead_is_lost_are_not_printed_afterwards(
        driver: Driver, replica: Start) -> None:
    namespace = driver.namespace('slow-peer')
    names = [f'd{i:02d}' for i in range(20)]
    for name in names:
        driver.create(namespace, name, sidecar=True)
    first = replica(0, DEPLOYWATCH_RESYNC_SECONDS='0')
    first.wait_for_count(lambda e: e['type'] == 'ADDED', len(names), what='the leader listing')

    first.pause_reading()  # its reader gets stuck; the changes wait in its memory
    changes = 400
    for index in range(changes):
        driver.scale(namespace, names[index % len(names)], index % 5 + 2)
    second = replica(100, DEPLOYWATCH_RESYNC_SECONDS='0')  # takes the lead meanwhile
    assert wait_until_consistent(second, driver.truth, namespaces={namespace}) == []
    eventually(lambda: _paused(first), what='the first replica paused by Kopf')
    eventually(lambda: 'lines not yet written: they are dropped' in first.stderr,
               what='the paused replica saying what it drops')

    first.resume_reading()
    assert first.stop() == 0, first.stderr[-3000:]  # and its stdout read to the end
    late = [e for e in first.events if e['type'] == 'MODIFIED']
    # What the pipe held (64 KiB) and the line in flight may still arrive: a handful, never the rest.
    assert len(late) < changes // 10, len(late)
    assert 'Traceback' not in first.stderr
