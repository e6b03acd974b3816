"""
The project's loopback control plane (``tests/cluster``) as a scenario drives it.

Most real scenarios need only a kubeconfig (any cluster). A few need the control
plane itself: restarting the kube-apiserver process, or reading its audit log.
They find it through ``REALK8S_DIR`` (what ``up.sh`` was started with; CI and
``make e2e-local`` export it) and are skipped, with that reason, without it.
"""
import contextlib
import json
import os
import pathlib
import signal
import subprocess
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from tests.harness.identity import server_of

REPO = pathlib.Path(__file__).resolve().parents[2]
UP = REPO / 'tests' / 'cluster' / 'up.sh'


class ControlPlane:
    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self.audit_log = directory / 'logs' / 'audit.log'

    @classmethod
    def from_environment(cls) -> 'ControlPlane | None':
        directory = os.environ.get('REALK8S_DIR')
        if not directory or not (pathlib.Path(directory) / 'kube-apiserver.pid').exists():
            return None
        return cls(pathlib.Path(directory))

    @property
    def version(self) -> str:
        return (self.directory / 'version').read_text().strip()

    @property
    def etcd_url(self) -> str:
        """etcd's client URL (plain http on 127.0.0.1): up.sh's kube-apiserver port minus 4064."""
        port = urlsplit(server_of(self.directory / 'kubeconfig')).port
        assert port is not None, 'the kubeconfig names no port'
        return f'http://127.0.0.1:{port - 4064}'

    def _pid(self, name: str) -> int:
        return int((self.directory / f'{name}.pid').read_text())

    def stop_apiserver(self) -> None:
        """Stop the kube-apiserver process (SIGTERM, then SIGKILL), as an upgrade or a crash would."""
        self._stop('kube-apiserver')

    def _stop(self, name: str) -> None:
        try:
            pid = self._pid(name)
        except FileNotFoundError:
            return
        stop_process(pid, grace=20)

    def start_apiserver(self) -> None:
        """
        ``up.sh`` again: it starts only what is not running, and returns once /readyz says ok.

        The stand-in kubelet and the kube-controller-manager are started afresh too:
        deploywatch's own watches are what the scenarios judge, and the others only have to
        be healthy for the next scenario. Left running, the controller-manager's informers
        came back in their own time after a restart (client-go's reflector backs off up to
        30 s): once on v1.34, a Deployment created a minute later was still not settled.
        """
        self._stop('kubelet')
        self._stop('kube-controller-manager')
        port = str(urlsplit(server_of(self.directory / 'kubeconfig')).port)
        env = {**os.environ, 'REALK8S_DIR': str(self.directory), 'REALK8S_VERSION': self.version,
               'REALK8S_PORT': port}
        done = subprocess.run(['bash', str(UP)], env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, f'up.sh failed:\n{done.stderr}'

    def freeze_apiserver(self) -> None:
        os.kill(self._pid('kube-apiserver'), signal.SIGSTOP)

    def thaw_apiserver(self) -> None:
        os.kill(self._pid('kube-apiserver'), signal.SIGCONT)

    def audit(self, username: str, *, since: float = 0.0) -> list[dict[str, Any]]:
        """
        Every audited request of ``username`` received from ``since`` on (epoch seconds), once
        each (by ``auditID``) in the order received: its ResponseComplete entry or, for a
        request still running (a watch is logged as ResponseStarted until it ends), the latest
        entry there is. The log is read as it is: a line the server is still writing is left out.
        """
        found: dict[str, dict[str, Any]] = {}
        for line in self.audit_log.read_text(errors='replace').splitlines():
            if username not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get('user', {}).get('username') != username:
                continue
            if _epoch(entry['requestReceivedTimestamp']) >= since:
                known = found.setdefault(entry['auditID'], entry)
                if known.get('stage') != 'ResponseComplete':
                    found[entry['auditID']] = entry
        return sorted(found.values(), key=lambda entry: _epoch(entry['requestReceivedTimestamp']))


def stop_process(pid: int, *, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; waits until it is gone (reaped, if our child)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: not gone, and not a zombie waiting to be reaped."""
    try:
        status = pathlib.Path(f'/proc/{pid}/status').read_text()
    except OSError:
        return False
    return '\nState:\tZ' not in status


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace('Z', '+00:00')).timestamp()
