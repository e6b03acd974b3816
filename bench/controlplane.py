"""
The project's real control plane (``tests/cluster``) as ``make bench-apiserver`` drives it.

``tests/cluster/up.sh`` starts etcd, kube-apiserver and kube-controller-manager from
cached binaries, each recording its pid in its folder; this module adds what a
measurement of the API server needs beyond that:

* free ports (kube-apiserver's, and etcd's at PORT-4064 and PORT-4063, as ``.ci/e2e-local``
  picks them) and a fresh temporary folder, stopped by ``down.sh`` whatever happens;
* the controller manager stopped before any Deployment exists (:meth:`ControlPlane.quiet`):
  with it, every new Deployment makes it create a ReplicaSet and write statuses, load
  that would land in the clients' measurements;
* a restart of kube-apiserver alone, with the very command line it runs with
  (``/proc/PID/cmdline``, not ``up.sh``, which would start the controller manager again):
  each client meets an API server started the same way, whose Go heap no earlier client
  has grown, and a restart is what makes a watching client relist (its watch cache
  starts after the client's resourceVersion: ``410 too old resource version``);
* :meth:`ControlPlane.settle`: wait until kube-apiserver's CPU is idle;
* :class:`PeakRss`: VmRSS sampled in a thread, for a peak that VmHWM (since the process
  began) cannot give for a window.
"""
import contextlib
import dataclasses
import os
import pathlib
import random
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator

from bench.procs import cpu_seconds, memory_bytes
from tests.harness.realk8s import stop_process

REPO = pathlib.Path(__file__).resolve().parents[1]
CLUSTER = REPO / 'tests' / 'cluster'
IDLE_SHARE = 0.05  # of one core: kube-apiserver with nothing to do takes ~1-2 % (leases, its own loops)
IDLE_SECONDS = 2.0  # that long below IDLE_SHARE is settled
SETTLE_LIMIT = 60.0  # seconds; past it the measurement goes on, and the wait is reported
SAMPLE_EVERY = 0.015  # seconds between VmRSS samples


def free_port() -> int:
    """A kube-apiserver port whose etcd ports (PORT-4064, PORT-4063) are free too (as .ci/e2e-local)."""
    for _ in range(500):
        port = random.randint(20000, 32000)
        with contextlib.ExitStack() as stack:
            try:
                for candidate in (port, port - 4064, port - 4063):
                    stack.enter_context(socket.socket()).bind(('127.0.0.1', candidate))
            except OSError:
                continue
            return port
    raise RuntimeError('no free port for a control plane')


@dataclasses.dataclass
class ControlPlane:
    """One control plane of ``tests/cluster`` in its own folder and ports."""
    directory: pathlib.Path
    port: int
    version: str = '1.37'

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, 'REALK8S_DIR': str(self.directory), 'REALK8S_PORT': str(self.port),
                'REALK8S_VERSION': self.version, 'REALK8S_KUBELET': '0'}

    @property
    def kubeconfig(self) -> pathlib.Path:
        return self.directory / 'kubeconfig'

    def pid(self, name: str) -> int:
        return int((self.directory / f'{name}.pid').read_text())

    @property
    def apiserver(self) -> int:
        return self.pid('kube-apiserver')

    @property
    def etcd(self) -> int:
        return self.pid('etcd')

    def up(self) -> pathlib.Path:
        """``REALK8S_FRESH=1 up.sh``: an empty cluster; the admin kubeconfig."""
        output = subprocess.run([str(CLUSTER / 'up.sh')], env={**self.env, 'REALK8S_FRESH': '1'}, check=True,
                                stdout=subprocess.PIPE, text=True).stdout
        return pathlib.Path(output.strip().splitlines()[-1])

    def down(self) -> None:
        subprocess.run([str(CLUSTER / 'down.sh')], env=self.env, check=False)

    def quiet(self) -> None:
        """Stop kube-controller-manager (by its recorded pid) for good: see the module's docstring."""
        stop_process(self.pid('kube-controller-manager'), grace=10)

    def ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.directory / 'pki' / 'ca.crt'))
        try:
            with urllib.request.urlopen(f'https://127.0.0.1:{self.port}/readyz', context=context,
                                        timeout=2) as response:
                return bool(response.read() == b'ok')
        except OSError:
            return False

    def restart_apiserver(self) -> float:
        """kube-apiserver stopped (SIGTERM) and started again as it ran; seconds until /readyz."""
        pid = self.apiserver
        argv = pathlib.Path(f'/proc/{pid}/cmdline').read_bytes().rstrip(b'\0').split(b'\0')
        stop_process(pid, grace=10)
        started = time.monotonic()
        log = self.directory / 'logs' / 'kube-apiserver.log'
        with log.open('ab') as output:
            process = subprocess.Popen([a.decode() for a in argv], stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=output, start_new_session=True)
        (self.directory / 'kube-apiserver.pid').write_text(f'{process.pid}\n')
        while not self.ready():
            if process.poll() is not None:
                raise RuntimeError(f'kube-apiserver exited with {process.returncode}: see {log}')
            if time.monotonic() - started > 120:
                raise RuntimeError('kube-apiserver not ready in 120 s')
            time.sleep(0.1)
        return time.monotonic() - started

    def settle(self) -> float:
        """Wait until kube-apiserver has been idle for :data:`IDLE_SECONDS`; the seconds waited."""
        started = time.monotonic()
        pid = self.apiserver
        while time.monotonic() - started < SETTLE_LIMIT:
            before = cpu_seconds(pid)
            time.sleep(IDLE_SECONDS)
            if cpu_seconds(pid) - before <= IDLE_SHARE * IDLE_SECONDS:
                break
        return time.monotonic() - started


@contextlib.contextmanager
def control_plane(version: str = '1.37') -> Iterator[ControlPlane]:
    """A fresh control plane in a temporary folder, always stopped (``down.sh``) and removed."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix='deploywatch-bench-apiserver-'))
    plane = ControlPlane(directory / 'k8s', free_port(), version)
    try:
        plane.up()
        yield plane
    finally:
        plane.down()
        subprocess.run(['rm', '-rf', str(directory)], check=False)


class PeakRss:
    """The highest VmRSS of a process, sampled every :data:`SAMPLE_EVERY` s in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = memory_bytes(pid, 'VmRSS')
        self.peak = self.before
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name='rss-sampler', daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            with contextlib.suppress(OSError, RuntimeError):
                self.peak = max(self.peak, memory_bytes(self.pid, 'VmRSS'))
                self.samples += 1

    def stop(self) -> int:
        """Stop sampling (one last sample first); the growth: peak - VmRSS when sampling began."""
        with contextlib.suppress(OSError, RuntimeError):
            self.peak = max(self.peak, memory_bytes(self.pid, 'VmRSS'))
        self._stop.set()
        self._thread.join()
        return self.peak - self.before
