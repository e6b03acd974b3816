"""
Guarantees 4-5 and 8: error answers are retried without loss; what cannot work says so and exits.
"""
import pathlib
import signal
import subprocess

import pytest

from deploywatch.kube.loop import FORBIDDEN_GRACE
from deploywatch.testing import ServerThread, User
from tests.harness.driver import Driver
from tests.harness.operator import HANDLERS, KOPF, of, operator_env
from tests.harness.truth import wait_until_consistent
from tests.robustness.conftest import Start, is_listing

# seconds: a bound on the behaviour "exits by itself" (after watching.FORBIDDEN_GRACE), not a speed claim
EXIT_WITHIN = FORBIDDEN_GRACE + 30.0


@pytest.mark.parametrize(('status', 'times'), [(500, 2), (503, 3), (429, 3), (500, 12)])
def test_error_bursts_on_list_and_watch_are_retried_without_loss(
        driver: Driver, start: Start, status: int, times: int) -> None:
    namespace = driver.namespace('bursts')
    driver.create(namespace, 'a')
    operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0'})
    operator.wait_for(of('a', 'ADDED'), what='ADDED')

    driver.faults.answer(status, times=times)
    driver.faults.cut_watch(after=1)  # the watch ends; reconnecting meets the errors
    driver.scale(namespace, 'a', 2)
    driver.scale(namespace, 'a', 3)
    driver.create(namespace, 'b')
    driver.delete(namespace, 'a')

    assert wait_until_consistent(operator, driver.truth) == []
    assert driver.faults.fired.count(f'watch:{status}') + driver.faults.fired.count(f'list:{status}') == times
    assert operator.process.poll() is None  # still running


@pytest.mark.parametrize(('status', 'why'), [(410, 'expired'), (504, 'too large resource version')])
def test_a_watch_that_cannot_resume_lists_again(driver: Driver, start: Start, status: int, why: str) -> None:
    """HTTP 410 or 504 ResourceVersionTooLarge on a watch: relist, as client-go's reflector does."""
    namespace = driver.namespace('relist')
    driver.create(namespace, 'a')
    operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0'})
    operator.wait_for(of('a', 'ADDED'), what='ADDED')
    log = driver.server.server.log
    lists_before = len([r for r in log.by('deploywatch') if is_listing(r)])

    # A 504 is a server error that Kopf retries (three times) before deploywatch sees it.
    driver.faults.answer(status, verbs=frozenset({'watch'}), times=1 if status == 410 else 4)
    driver.faults.cut_watch(after=0)  # the watch ends; resuming it meets the answer
    driver.scale(namespace, 'a', 2)
    driver.create(namespace, 'b')

    assert wait_until_consistent(operator, driver.truth) == []
    assert f'watch:{status}' in driver.faults.fired
    lists = [r for r in log.by('deploywatch') if is_listing(r)]
    assert len(lists) == lists_before + 1, f'{why}: the watch was retried from the same version, not relisted'
    assert operator.process.poll() is None


def test_a_short_burst_of_403_is_ridden_out(driver: Driver, start: Start) -> None:
    """An API server that has just started answers 403 until its RBAC caches are synced."""
    namespace = driver.namespace('restarting')
    driver.create(namespace, 'a')
    operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0'})
    operator.wait_for(of('a', 'ADDED'), what='ADDED')

    driver.faults.answer(403, times=6)  # Kopf's three retries of a request, twice: some seconds of 403s
    driver.faults.cut_watch(after=0)
    driver.scale(namespace, 'a', 2)
    driver.create(namespace, 'b')

    assert wait_until_consistent(operator, driver.truth) == []
    assert driver.faults.fired.count('watch:403') == 6
    assert operator.process.poll() is None
    stderr = operator.stderr
    assert stderr.count('Forbidden to read deployments') == 1, stderr
    assert stderr.count('allowed again') == 1, stderr
    assert 'deploywatch: forbidden' not in stderr


def test_forbidden_from_the_start_is_one_clear_line_and_exit_3(
        apiserver: ServerThread, tmp_path: pathlib.Path) -> None:
    apiserver.call(apiserver.server.add_user, User('nobody', 'nobody-token', ()))
    kubeconfig = apiserver.kubeconfig(tmp_path / 'kubeconfig', token='nobody-token')

    result = subprocess.run([str(KOPF), 'run', str(HANDLERS), '--namespace=default'],
                            env=operator_env(kubeconfig), capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=EXIT_WITHIN, check=False)

    assert result.returncode == 3
    ours = [line for line in result.stderr.splitlines() if line.startswith('deploywatch:')]
    assert len(ours) == 1, result.stderr
    assert 'cannot list resource "deployments"' in ours[0] and 'list and watch' in ours[0]
    assert 'Traceback' not in result.stderr


def test_permission_lost_while_running_is_reported_and_exits_3(driver: Driver, start: Start) -> None:
    namespace = driver.namespace('revoked')
    driver.create(namespace, 'a')
    operator = start(f'--namespace={namespace}')
    operator.wait_for(of('a', 'ADDED'), what='ADDED')

    driver.faults.answer(403, times=1000)
    driver.faults.cut_watch(after=0)
    driver.scale(namespace, 'a', 2)

    assert operator.process.wait(timeout=EXIT_WITHIN) == 3
    assert 'deploywatch: forbidden to read deployments in namespace' in operator.stderr


@pytest.mark.parametrize('kubeconfig', ['missing', 'not-yaml', 'no-cluster'])
def test_missing_or_invalid_kubeconfig_is_one_line_and_exit_2(
        tmp_path: pathlib.Path, kubeconfig: str) -> None:
    path = tmp_path / 'kubeconfig'
    if kubeconfig == 'not-yaml':
        path.write_text('{not: [yaml')
    elif kubeconfig == 'no-cluster':
        path.write_text('apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n')

    result = subprocess.run([str(KOPF), 'run', str(HANDLERS), '--namespace=default'],
                            env={**operator_env(path), 'HOME': str(tmp_path)}, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=EXIT_WITHIN, check=False)

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith('deploywatch: no usable Kubernetes credentials'), lines


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_within_5_seconds_with_everything_printed(
        driver: Driver, start: Start, sig: signal.Signals) -> None:
    namespace = driver.namespace('signals')
    for name in ('a', 'b'):
        driver.create(namespace, name)
    operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0.1'})
    operator.wait_for_count(of('a', 'RESYNC'), 3, what='a running stream')

    assert operator.stop(sig, timeout=5.0) == 0  # stop() kills after the timeout: -9 would fail
    operator.check()  # every line printed up to the end was whole and valid
