"""
Kopf's own loops through an outage longer than Kopf's default retry budget.

deploywatch's Deployment watch retries forever (deploywatch.kube.loop); Kopf's own
loops do not: each of their requests is retried along ``error_backoffs`` (Kopf's
default sums to 54 s), and a request that still fails then stops the loop, and with
it the operator. deploywatch sets a budget of ~5 minutes (``KOPF_BACKOFFS``) so that
an API server away for a minute or two stops nothing. Two operators hold the two
loops a deployment runs: one with a namespace glob (Kopf's namespace observer; its
peering would be namespaced, which the emulator does not serve) and one with
cluster-wide peering (the keep-alive, a PATCH every 50-55 s). The outage is aligned
so that a keep-alive falls in its first seconds and would run out of Kopf's default
budget while the server is still away.
"""
import functools
import pathlib
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from deploywatch.testing import ServerThread
from tests.deploy import peering
from tests.harness.clusters import EMULATED_OPERATORS
from tests.harness.driver import Driver
from tests.harness.operator import Event, OperatorProcess, eventually
from tests.harness.truth import mismatches, wait_until_consistent
from tests.robustness.conftest import Start

PEERING = 'deploywatch'
OUTAGE = 65.0  # longer than Kopf's default budget (54 s), well within deploywatch's
KEEPALIVE_LEAD = 46.0  # from a keep-alive to the outage: the next one comes 50-55 s after it
CATCH_UP = OUTAGE + 60.0  # from the outage's start: Kopf's and the watch loop's backoffs reach 30 s


@pytest.fixture(autouse=True)
def peering_served(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> Iterator[None]:
    """Before the emulated server starts (autouse fixtures come first): it serves ClusterKopfPeerings."""
    peering.serve(monkeypatch, tmp_path)
    yield


def _last_keepalive(driver: Driver) -> float:
    """When the newest keep-alive was sent (epoch seconds), from the peering object; 0 if none."""
    body = driver.server.call(driver.store.get, peering.CLUSTER_PEERINGS, '', PEERING)
    seen = [datetime.fromisoformat(peer['lastseen']).timestamp() for peer in body.get('status', {}).values()
            if isinstance(peer, dict) and 'lastseen' in peer]
    return max(seen, default=0.0)


def _is(change: tuple[str, str, str], event: Event) -> bool:
    return (event['namespace'], event['name'], event['resourceVersion']) == change


def _printed(operator: OperatorProcess, change: tuple[str, str, str]) -> int:
    return len(operator.matching(functools.partial(_is, change)))


def test_kopfs_own_loops_ride_out_an_outage_longer_than_kopfs_default_budget(
        apiserver: ServerThread, driver: Driver, start: Start, tmp_path: pathlib.Path) -> None:
    body = {'apiVersion': 'kopf.dev/v1', 'kind': 'ClusterKopfPeering', 'metadata': {'name': PEERING}}
    driver.server.call(driver.store.create, peering.CLUSTER_PEERINGS, '', body, manager='kubectl')
    first, outside = driver.namespace('o-first'), driver.namespace('q-outside')
    for namespace in (first, outside):
        for name in ('a', 'b'):
            driver.create(namespace, name)
    env = {'DEPLOYWATCH_RESYNC_SECONDS': '0'}
    globs = apiserver.kubeconfig(tmp_path / 'globs.kubeconfig', token=EMULATED_OPERATORS['globs'][1])
    admin = apiserver.kubeconfig(tmp_path / 'peering.kubeconfig')  # peering patches: beyond base RBAC
    observer = start('--namespace=o-*', env=env, kubeconfig=globs)
    peer = start('--all-namespaces', f'--peering={PEERING}', '--priority=1', env=env, kubeconfig=admin)
    second = 'o-second'
    scopes = {'namespace observer': (observer, {first, second}),
              'peering': (peer, {first, second, outside})}
    for what, (operator, scope) in scopes.items():
        assert wait_until_consistent(operator, driver.truth, namespaces=scope) == [], what
    eventually(lambda: _last_keepalive(driver) > 0, what='the first keep-alive')
    time.sleep(max(0.0, _last_keepalive(driver) + KEEPALIVE_LEAD - time.time()))

    driver.server.outage(OUTAGE)
    began = time.monotonic()
    ended = time.time() + OUTAGE
    # Meanwhile: changes everywhere, and a new namespace that only the namespace observer finds.
    written = [(ns, 'a', driver.scale(ns, 'a', 3)['metadata']['resourceVersion']) for ns in (first, outside)]
    driver.delete(first, 'b')
    driver.namespace(second)
    written.append((second, 'c', driver.create(second, 'c')['metadata']['resourceVersion']))

    deadline = began + CATCH_UP
    while problems := {what: found for what, (operator, scope) in scopes.items()
                       if (found := mismatches(operator.matching(lambda _: True), driver.truth(),
                                               namespaces=scope))}:
        for what, (operator, _) in scopes.items():
            assert operator.process.poll() is None, \
                f'{what}: exited with {operator.process.poll()}\n{operator.stderr[-5000:]}'
        assert time.monotonic() < deadline, f'not consistent {CATCH_UP:.0f} s after the outage: {problems}'
        time.sleep(0.5)
    # Kopf stamps `lastseen` when it builds a keep-alive and retries the same body: a stamp from
    # within the outage can only reach the server's store by a retry that landed after it.
    eventually(lambda: _last_keepalive(driver) > ended - OUTAGE, what='a keep-alive after the outage',
               timeout=120)
    # And the watches are live again: one more change each.
    late = [(ns, 'a', driver.scale(ns, 'a', 4)['metadata']['resourceVersion']) for ns in (first, outside)]

    for what, (operator, scope) in scopes.items():
        for change in [c for c in [*written, *late] if c[0] in scope]:
            operator.wait_for(functools.partial(_is, change), what=f'{what}: {change}')
            times = _printed(operator, change)
            assert times == 1, f'{what}: {change} printed {times} times'
        deleted: list[Event] = operator.matching(lambda e: e['type'] == 'DELETED' and e['namespace'] == first)
        assert [e['name'] for e in deleted] == ['b'], what
        assert wait_until_consistent(operator, driver.truth, namespaces=scope) == [], what
        assert operator.process.poll() is None, f'{what}: exited\n{operator.stderr[-5000:]}'
        assert 'Traceback' not in operator.stderr, f'{what}:\n{operator.stderr[-5000:]}'
