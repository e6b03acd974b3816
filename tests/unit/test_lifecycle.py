"""
The one way to stop (``runtime.lifecycle``), and a handlers module that only registers.

The exits themselves are the process tests' (tests/robustness/test_exit_status.py,
test_errors.py, tests/stream/test_cli.py); here: which status a stop keeps, that a stop
is the normal one (SIGTERM to itself, once), and that importing the handlers starts nothing.
"""
import os
import signal
import subprocess
import sys

import pytest

from deploywatch.runtime.lifecycle import Lifecycle, Status


@pytest.fixture
def signals(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, 'kill', lambda pid, sig: sent.append((pid, sig)))
    return sent


def test_a_stop_is_sigterm_to_itself_once_and_keeps_the_first_failure(
        signals: list[tuple[int, int]]) -> None:
    run = Lifecycle()
    run.stop(Status.FAILED, why='RESYNC failed')
    run.stop(Status.FORBIDDEN, why='forbidden to read deployments')
    run.stop()
    assert signals == [(os.getpid(), signal.SIGTERM)]
    assert (run.status, run.why, run.stopping) == (Status.FAILED, 'RESYNC failed', True)


def test_a_plain_stop_leaves_the_status_at_0(signals: list[tuple[int, int]]) -> None:
    run = Lifecycle()
    run.stop()
    assert run.status == Status.STOPPED and signals == [(os.getpid(), signal.SIGTERM)]


def test_forbidden_is_one_line_on_stderr(signals: list[tuple[int, int]],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    Lifecycle().stop(Status.FORBIDDEN, why='forbidden to read deployments cluster-wide: no.')
    assert capsys.readouterr().err == 'deploywatch: forbidden to read deployments cluster-wide: no.\n'


def test_importing_the_handlers_checks_and_starts_nothing() -> None:
    """A bad setting and no credentials: the import is fine; it is Kopf's start-up that refuses."""
    code = ('import threading, deploywatch.handlers; '
            'assert threading.active_count() == 1, threading.enumerate()')  # no spool, no /metrics
    env = {**os.environ, 'DEPLOYWATCH_RESYNC_SECONDS': 'abc', 'DEPLOYWATCH_METRICS_PORT': '0',
           'KUBECONFIG': '/nonexistent', 'HOME': '/nonexistent'}
    result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, '', '')
