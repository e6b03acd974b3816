"""
The RBAC of every shape, proven from the emulated API server's request log.

Each test builds a shape with kustomize, gives deploywatch's ServiceAccount exactly what
the shape binds to it, and runs the shape's container as a pod would run it (the
Dockerfile's ENTRYPOINT with the Deployment's args, or the overlay's own command, with
the image's ENV and the container's env) through a lifecycle: Deployments found at
start, created, scaled, rolled out, deleted, a relist after ``410 Gone``. Then what the
requests needed is compared with what the shape grants, both ways: a use no grant
covers would be a 403 in a real cluster, and a grant no use needed is needless
privilege. The verbs each run used are printed in pytest's summary.
"""
import pathlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from deploywatch.testing import ServerThread, kinds
from tests.deploy import containers, dockerfile, emulator, manifests, peering
from tests.deploy.conftest import report
from tests.deploy.containers import Replica, named
from tests.deploy.rbac import Access, granted, problems, used
from tests.harness.driver import Driver

IMAGE = dockerfile.parse(manifests.REPO / 'Dockerfile')
VENV = pathlib.Path(sys.executable).parent.parent  # the dev venv holds what the image's venv holds


class Run:
    """One shape against one emulated server: its grants, its replicas, the log's verdict."""

    def __init__(self, shape: str, thread: ServerThread, tmp_path: pathlib.Path) -> None:
        self.shape = shape
        self.docs = manifests.build(shape)
        self.thread = thread
        self.driver = Driver(thread)
        self.kubeconfig = emulator.kubeconfig(thread, tmp_path / 'serviceaccount.kubeconfig')
        self.tmp_path = tmp_path
        self.replicas: list[Replica] = []

    def start(self, pod: str) -> Replica:
        container = manifests.container(self.docs)
        command = containers.on_free_port(containers.argv(IMAGE, container))
        env = containers.environment(IMAGE, container, venv=VENV, pod=pod,
                                     extra={'KUBECONFIG': str(self.kubeconfig), 'HOME': str(self.tmp_path)})
        replica = Replica(command, env=env, stderr_path=self.tmp_path / f'{pod}.stderr')
        self.replicas.append(replica)
        return replica

    def stop_all(self) -> None:
        for replica in self.replicas:
            replica.stop()

    def verdict(self, config: pytest.Config) -> list[str]:
        sent = self.thread.server.log.by(emulator.USER)
        denied = [f'{r.verb} {r.path}: {r.status}' for r in sent if r.status == 403]
        uses = used(sent)
        report(config, f'{self.shape}: used {", ".join(str(use) for use in sorted(uses))}')
        return denied + problems(granted(self.docs), uses)


@pytest.fixture
def run(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Run]:
    shape: str = request.param
    with emulator.serving(granted(manifests.build(shape))) as thread:
        current = Run(shape, thread, tmp_path)
        yield current
        current.stop_all()


def lifecycle(run: Run, replica: Replica, namespace: str) -> None:
    """A Deployment created, scaled, rolled out and deleted in ``namespace``, all printed."""
    run.driver.create(namespace, f'new-{namespace}')
    run.driver.scale(namespace, f'new-{namespace}', 3)
    run.driver.roll_out(namespace, f'new-{namespace}')
    run.driver.delete(namespace, f'new-{namespace}')
    replica.wait_for(named(f'new-{namespace}', 'DELETED'), what=f'the DELETED in {namespace}')


def relist(run: Run, replica: Replica, namespace: str) -> None:
    """Every watch expires (410 Gone): the stream lists again, then goes on."""
    run.driver.compact()
    run.driver.faults.expire_watch()
    run.driver.faults.cut_watch(after=0)
    run.driver.create(namespace, 'after-relist')
    replica.wait_for(named('after-relist', 'ADDED'), what='a Deployment created after the relist')


@pytest.mark.parametrize('run', ['base'], indirect=True)
def test_the_base_clusterrole_grants_exactly_what_a_cluster_wide_run_uses(
        run: Run, request: pytest.FixtureRequest) -> None:
    for namespace in ('team-a', 'other'):
        run.driver.namespace(namespace)
        run.driver.create(namespace, f'before-{namespace}')
    replica = run.start('deploywatch-5f7c9-base')
    for namespace in ('team-a', 'other'):
        replica.wait_for(named(f'before-{namespace}', 'ADDED'), what=f'the Deployment found in {namespace}')
        lifecycle(run, replica, namespace)
    relist(run, replica, 'other')
    assert replica.stop() == 0, replica.stderr
    assert run.verdict(request.config) == []


@pytest.mark.parametrize('run', ['namespaced'], indirect=True)
def test_the_namespaced_roles_grant_exactly_what_a_run_on_the_listed_namespaces_uses(
        run: Run, request: pytest.FixtureRequest) -> None:
    listed = sorted({doc['metadata']['namespace'] for doc in run.docs if doc['kind'] == 'Role'})
    assert manifests.container(run.docs)['args'] == [f'--namespace={name}' for name in listed]
    for namespace in [*listed, 'other']:
        run.driver.namespace(namespace)
        run.driver.create(namespace, f'before-{namespace}')
    replica = run.start('deploywatch-5f7c9-namespaced')
    for namespace in listed:
        replica.wait_for(named(f'before-{namespace}', 'ADDED'), what=f'the Deployment found in {namespace}')
        lifecycle(run, replica, namespace)
    relist(run, replica, listed[0])
    run.driver.create('other', 'unwatched')
    assert replica.stop() == 0, replica.stderr
    assert {event['namespace'] for event in replica.events} == set(listed)
    assert run.verdict(request.config) == []


@pytest.mark.parametrize('run', ['namespace-globs'], indirect=True)
def test_the_namespace_globs_component_grants_exactly_what_a_run_on_a_pattern_uses(
        run: Run, request: pytest.FixtureRequest) -> None:
    assert manifests.container(run.docs)['args'] == ['--namespace=team-*']
    for namespace in ('team-a', 'other'):
        run.driver.namespace(namespace)
        run.driver.create(namespace, f'before-{namespace}')
    replica = run.start('deploywatch-5f7c9-globs')
    replica.wait_for(named('before-team-a', 'ADDED'), what='the Deployment found in team-a')
    lifecycle(run, replica, 'team-a')
    run.driver.namespace('team-new')  # matches the pattern: watched once Kopf sees it created
    run.driver.create('team-new', 'first-in-team-new')
    replica.wait_for(named('first-in-team-new', 'ADDED'), what='a Deployment in a namespace created later')
    lifecycle(run, replica, 'team-new')
    run.driver.create('other', 'unwatched')
    assert replica.stop() == 0, replica.stderr
    assert {event['namespace'] for event in replica.events} == {'team-a', 'team-new'}
    assert run.verdict(request.config) == []


@pytest.fixture
def peering_served(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """ClusterKopfPeerings served (tests/deploy/peering.py); a test lists it before ``run``."""
    peering.serve(monkeypatch, tmp_path)


@pytest.mark.parametrize('run', ['ha'], indirect=True)
def test_ha_replicas_print_one_at_a_time_with_exactly_the_peering_rbac(
        peering_served: None, run: Run, request: pytest.FixtureRequest) -> None:
    peering_object = manifests.one(run.docs, 'ClusterKopfPeering')
    name = peering_object['metadata']['name']
    store = run.thread.server.store
    run.thread.call(store.create, peering.CLUSTER_PEERINGS, '', peering_object, manager='kubectl')

    def status() -> dict[str, Any]:
        found: dict[str, Any] = run.thread.call(store.get, peering.CLUSTER_PEERINGS, '', name)
        return found.get('status') or {}

    def peers() -> set[str]:
        return set(status())

    run.driver.create('default', 'before')
    first = run.start('deploywatch-5f7c9-first')
    first.wait_for(named('before', 'ADDED'), what='the first replica printing')
    second = run.start('deploywatch-5f7c9-second')
    _eventually(lambda: peers() == {'deploywatch-5f7c9-first', 'deploywatch-5f7c9-second'},
                what='both replicas in the peering object')
    priorities = {peer: keepalive['priority'] for peer, keepalive in status().items()}
    assert priorities['deploywatch-5f7c9-first'] > priorities['deploywatch-5f7c9-second'], priorities
    run.driver.create('default', 'during')
    first.wait_for(named('during', 'ADDED'), what='the first (oldest) replica printing a new Deployment')
    assert second.events == [], 'the younger replica printed while the oldest runs'

    assert first.stop() == 0, first.stderr  # a clean stop takes the replica out of the peering
    _eventually(lambda: peers() == {'deploywatch-5f7c9-second'}, what='the first replica gone from peering')
    second.wait_for(named('during', 'ADDED'), what='the second replica taking over with a listing')
    run.driver.create('default', 'after')
    second.wait_for(named('after', 'ADDED'), what='the second replica printing new changes')
    assert second.stop() == 0, second.stderr
    # Each printed each Deployment once. The younger one printed none of the oldest's time from a
    # watch of its own ('during' would be initial: false): only from its listing at the takeover.
    assert _printed(first) == [('before', 'ADDED', True), ('during', 'ADDED', False)]
    assert _printed(second) == [('after', 'ADDED', False), ('before', 'ADDED', True),
                                ('during', 'ADDED', True)]
    assert peers() == set(), 'a replica left its keep-alive behind'

    writes = run.thread.server.log.writes(user=emulator.USER)
    assert {(r.verb, r.resource) for r in writes} == {('patch', 'clusterkopfpeerings')}, \
        'deploywatch wrote something other than its peering keep-alive'
    assert run.verdict(request.config) == []


def _printed(replica: Replica) -> list[tuple[str, str, bool | None]]:
    """What a replica printed of the changes, sorted; RESYNC left out (a round may fall in any run)."""
    return sorted((e['name'], e['type'], e.get('initial')) for e in replica.events if e['type'] != 'RESYNC')


def _eventually(condition: Callable[[], bool], *, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f'never happened: {what}'
        time.sleep(0.1)


def test_access_compares_names_and_scopes() -> None:
    """The comparison itself: a namespaced grant covers only its namespace, a named one only its name."""
    grant = Access('patch', 'kopf.dev', 'clusterkopfpeerings', None, 'deploywatch')
    assert grant.covers(Access('patch', 'kopf.dev', 'clusterkopfpeerings', None, 'deploywatch'))
    assert not grant.covers(Access('patch', 'kopf.dev', 'clusterkopfpeerings', None, 'other'))
    role = Access('list', 'apps', 'deployments', 'team-a')
    assert role.covers(Access('list', 'apps', 'deployments', 'team-a'))
    assert not role.covers(Access('list', 'apps', 'deployments', None))
    assert not role.covers(Access('list', 'apps', 'deployments', 'team-b'))
    assert problems({role}, set()) == ['granted but never used: list deployments.apps in namespace team-a']
    watch = Access('watch', 'apps', 'deployments', 'team-a')
    assert problems({role}, {Access('list', 'apps', 'deployments', 'team-a'), watch}) == [
        'used but not granted: watch deployments.apps in namespace team-a']


def test_the_peering_stand_in_is_still_needed() -> None:
    """When the emulator serves ClusterKopfPeerings itself, tests/deploy/peering.py should go."""
    assert kinds.find('kopf.dev', 'v1', 'clusterkopfpeerings') is None
