"""
The operator as a Unix process: bad settings, a reader that goes away, signals.

These run against the emulated API server only: they are about the process,
not about the cluster.
"""
import pathlib
import signal
import socket
import subprocess

import pytest

from deploywatch.testing import ServerThread, kinds
from deploywatch.testing.factory import deployment
from tests.conftest import OPERATOR_TOKEN
from tests.harness.operator import HANDLERS, KOPF, OperatorProcess, of, operator_env

BAD_VALUES = [
    ('DEPLOYWATCH_RESYNC_SECONDS', '-1'),
    ('DEPLOYWATCH_RESYNC_SECONDS', 'abc'),
    ('DEPLOYWATCH_RESYNC_SECONDS', '1e999'),
    ('DEPLOYWATCH_RESYNC_SECONDS', 'nan'),
    ('DEPLOYWATCH_REDACT', 'maybe'),
    ('DEPLOYWATCH_FORMAT', 'xml'),
    ('DEPLOYWATCH_RESYNC_SECONDS', '0.01'),  # below the floor: a typo, or a stream of nothing but RESYNC
    ('DEPLOYWATCH_LABEL_SELECTOR', 'tier in (front'),
    # Shaped like a selector, refused by the API server (400 on every LIST): keys, values, integers.
    ('DEPLOYWATCH_LABEL_SELECTOR', 'app=web_'),
    ('DEPLOYWATCH_LABEL_SELECTOR', 'example.com/team/app=web'),
    ('DEPLOYWATCH_LABEL_SELECTOR', 'replicas>few'),
    ('DEPLOYWATCH_TYPES', 'ADDED,CREATED'),
    ('DEPLOYWATCH_OBJECT', 'tiny'),
    ('DEPLOYWATCH_STATE_FILE', '/nonexistent-dir/state.json'),
    ('DEPLOYWATCH_METRICS_PORT', 'http'),
    ('DEPLOYWATCH_METRICS_PORT', '70000'),
    ('DEPLOYWATCH_STALL_SECONDS', '0.5'),  # below a second: a healthy quiet watch would fail it
    ('DEPLOYWATCH_STALL_SECONDS', '-3'),
]


def _seed(apiserver: ServerThread, *names: str) -> None:
    for name in names:
        apiserver.call(apiserver.server.store.create, kinds.DEPLOYMENTS, 'default',
                       deployment(name), manager='test')


@pytest.mark.parametrize(('variable', 'value'), BAD_VALUES)
def test_a_bad_setting_stops_before_connecting_with_one_clear_line(
        apiserver: ServerThread, tmp_path: pathlib.Path, variable: str, value: str) -> None:
    kubeconfig = apiserver.kubeconfig(tmp_path / 'kubeconfig', token=OPERATOR_TOKEN)

    result = subprocess.run([str(KOPF), 'run', str(HANDLERS), '--namespace=default'],
                            env=operator_env(kubeconfig, {variable: value}), capture_output=True,
                            stdin=subprocess.DEVNULL, timeout=60, check=False)

    assert result.returncode == 2
    assert result.stdout == b''
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert variable in lines[0] and repr(value) in lines[0] and 'expected' in lines[0]
    assert apiserver.server.log.requests == []  # nothing was even asked of the API server


def test_a_metrics_port_in_use_stops_before_connecting_with_one_clear_line(
        apiserver: ServerThread, tmp_path: pathlib.Path) -> None:
    kubeconfig = apiserver.kubeconfig(tmp_path / 'kubeconfig', token=OPERATOR_TOKEN)
    with socket.socket() as taken:
        taken.bind(('0.0.0.0', 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([str(KOPF), 'run', str(HANDLERS), '--namespace=default'],
                                env=operator_env(kubeconfig, {'DEPLOYWATCH_METRICS_PORT': str(port)}),
                                capture_output=True, stdin=subprocess.DEVNULL, timeout=60, check=False)

    assert result.returncode == 2
    assert result.stdout == b''
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert f'cannot serve metrics on port {port}' in lines[0] and 'DEPLOYWATCH_METRICS_PORT' in lines[0]
    assert apiserver.server.log.requests == []


def test_an_unknown_setting_is_warned_about_and_ignored(
        apiserver: ServerThread, tmp_path: pathlib.Path) -> None:
    _seed(apiserver, 'web')
    operator = OperatorProcess(kubeconfig=apiserver.kubeconfig(tmp_path / 'kc', token=OPERATOR_TOKEN),
                               args=['--namespace=default'], stderr_path=tmp_path / 'stderr',
                               env={'DEPLOYWATCH_RESYNC_SECOND': '5'})
    try:
        operator.wait_for(of('web', 'ADDED'), what='ADDED despite the typo')
        assert 'DEPLOYWATCH_RESYNC_SECOND is not a deploywatch setting' in operator.stderr
    finally:
        assert operator.stop() == 0


def test_reader_closing_stdout_ends_the_process_quietly_with_status_0(
        apiserver: ServerThread, tmp_path: pathlib.Path) -> None:
    _seed(apiserver, 'a', 'b', 'c')
    kubeconfig = apiserver.kubeconfig(tmp_path / 'kubeconfig', token=OPERATOR_TOKEN)
    script = (f'"{KOPF}" run "{HANDLERS}" --namespace=default 2>"{tmp_path}/stderr" | head -1; '
              'echo "exit=${PIPESTATUS[0]}"')

    result = subprocess.run(['bash', '-c', script], capture_output=True, text=True, timeout=60,
                            env=operator_env(kubeconfig, {'DEPLOYWATCH_RESYNC_SECONDS': '0.2'}),
                            stdin=subprocess.DEVNULL, check=True)

    first, status = result.stdout.splitlines()
    assert '"type":"ADDED"' in first
    assert status == 'exit=0'
    stderr = (tmp_path / 'stderr').read_text()
    assert 'Traceback' not in stderr and 'BrokenPipe' not in stderr, stderr


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_process_with_status_0(
        apiserver: ServerThread, tmp_path: pathlib.Path, sig: signal.Signals) -> None:
    _seed(apiserver, 'web')
    operator = OperatorProcess(kubeconfig=apiserver.kubeconfig(tmp_path / 'kc', token=OPERATOR_TOKEN),
                               args=['--namespace=default'], stderr_path=tmp_path / 'stderr')
    operator.wait_for(of('web', 'ADDED'), what='ADDED')

    assert operator.stop(sig) == 0
    assert 'Traceback' not in operator.stderr
