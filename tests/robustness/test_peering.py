"""
Kopf peering: a replica that another one (of higher priority) has paused prints no RESYNC.

A standby keeps watching and prints only the DELETED of what it printed itself (see
test_handover.py for the hand-overs); RESYNC from its memory would repeat what the leader
prints. The emulated API server serves Kopf's ClusterKopfPeering for these tests
(tests/deploy/peering.py).
"""
import pathlib
from collections.abc import Iterator

import pytest

from deploywatch.testing import ServerThread
from tests.deploy import peering
from tests.harness.driver import Driver
from tests.harness.operator import OperatorProcess, eventually, of
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
