"""
``make bench-apiserver``: what each client costs a real kube-apiserver (issue 22, item 4).

``make bench`` measures the clients against a lean load server; this measures the other
side: the project's own control plane (``tests/cluster``, v1.37 or ``--version 1.34``, fresh, on free ports,
stopped at the end whatever happens) holding N realistic Deployments, and four clients,
each run alone, with the admin kubeconfig:

* ``deploywatch``: deploywatch of this tree (a copy taken at the start), which lists with
  pages of 2,000 (``LIST_CHUNK``), as ``bench.run`` runs it;
* ``streaming``: deploywatch at :data:`REFERENCE`, the last commit with streaming lists (a
  watch with ``sendInitialEvents=true``) where the server offers them (``git archive``, as
  ``bench.run --reference``): the "before" row;
* ``informer``: the client-go v0.37 SharedInformer of ``bench/informer`` (``-resync=0``),
  whose ``WatchListClient`` streams by default;
* ``kubectl``: ``kubectl get deploy -A -w -o json --output-watch-events``;
* ``informer-json``, a diagnostic row outside the goal: the same informer asking for JSON
  (``-json``), as deploywatch does, to show what protobuf spares the server, and
  ``informer-json-list``, the same with ``WatchListClient`` off: a LIST in JSON, no stream.

Before each measurement kube-apiserver is restarted (``bench.controlplane``) and left
until idle, so every client meets the same server: none meets a Go heap an earlier
client already grew (which would hide its own RSS growth). A measurement window runs
from just before the client's spawn (initial) or its resumption (relist) to when it has
done: its N-th initial line read (``bench.procs.Lines``), or its relist completed.

The relist: the client runs until its initial listing is out and the server idle, is
stopped (SIGSTOP), kube-apiserver restarts and settles, and the client continues
(SIGCONT): its watch is gone, it resumes from its resourceVersion, which the new watch
cache does not hold (``410 too old resource version``), and it lists again. Done is
``deploywatch_relists_total`` = 1 on deploywatch's ``/metrics`` (polled every 50 ms), and
for the informer N more ``Func`` lines (client-go hands each object of a relist to
``UpdateFunc``). kubectl has no relist: ``get -w`` ends when its watch does.
"""
import argparse
import collections
import dataclasses
import datetime
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

from bench import apiserver_report, populate
from bench.controlplane import ControlPlane, PeakRss, control_plane, free_port
from bench.procs import Lines, cpu_seconds, memory_bytes, terminate
from bench.run import (
    BIN,
    REPO,
    RESULTS,
    Client,
    clients,
    informer_binary,
    machine,
    reference_snapshot,
    snapshot,
)

REFERENCE = '40f6beea06093c48f802e16e64197c4776e9f90a'  # the last commit with streaming lists
KEYS = {'deploywatch': 'deploywatch', 'today': 'streaming', 'informer': 'informer',
        'informer-json': 'informer-json', 'informer-json-list': 'informer-json-list', 'kubectl': 'kubectl'}
RELISTS = ('deploywatch', 'streaming', 'informer')
POLL = 0.05  # seconds between two reads of deploywatch's /metrics while it relists
QUIET = 0.5  # seconds without output after the N-th object: the client's listing is out

Figures = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Setup:
    """What every measurement shares: the control plane, the kubeconfig the clients get, N, where logs go."""
    plane: ControlPlane
    kubeconfig: pathlib.Path
    n: int
    logs: pathlib.Path
    relists: bool = True  # a relist row too (--no-relist: only the start)


class Window:
    """kube-apiserver's and etcd's CPU, kube-apiserver's RSS growth, from now to :meth:`close`."""

    def __init__(self, plane: ControlPlane) -> None:
        self.apiserver, self.etcd = plane.apiserver, plane.etcd
        self.rss = PeakRss(self.apiserver)
        self.audit = plane.directory / 'logs' / 'audit.log'
        self.audited = self.audit.stat().st_size
        self.apiserver_cpu, self.etcd_cpu = cpu_seconds(self.apiserver), cpu_seconds(self.etcd)
        self.started = time.monotonic()

    def close(self, done: float | None) -> Figures:
        apiserver_cpu, etcd_cpu = cpu_seconds(self.apiserver), cpu_seconds(self.etcd)
        growth = self.rss.stop()
        return {'seconds': None if done is None else done - self.started,
                'apiserver_cpu_s': apiserver_cpu - self.apiserver_cpu, 'etcd_cpu_s': etcd_cpu - self.etcd_cpu,
                'apiserver_rss_growth_mb': growth / 2**20, 'apiserver_rss_before_mb': self.rss.before / 2**20,
                'rss_samples': self.rss.samples, 'requests': self.requests()}

    def requests(self) -> dict[str, int]:
        """The clients' requests in the window by verb: the audit log's (every user but the control plane)."""
        with self.audit.open('rb') as log:
            log.seek(self.audited)
            entries = [json.loads(line) for line in log.read().splitlines() if line.strip()]
        verbs = {entry['auditID']: entry['verb'] for entry in entries}
        return dict(collections.Counter(verbs.values()))


class Session:
    """One client process, its stdout kept whole for the checks after the run."""

    def __init__(self, setup: Setup, client: Client, *, name: str) -> None:
        self.client, self.n = client, setup.n
        self.metrics_port = free_port() if client.key in ('deploywatch', 'today') else None
        environment = {k: v for k, v in os.environ.items() if not k.startswith(('DEPLOYWATCH_', 'KOPF_'))}
        environment.update({'KUBECONFIG': str(setup.kubeconfig), **client.env})
        if self.metrics_port is not None:
            environment['DEPLOYWATCH_METRICS_PORT'] = str(self.metrics_port)
        self.stderr = setup.logs / f'{name}.stderr'
        self.process = subprocess.Popen(client.argv, cwd=REPO, env=environment,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=self.stderr.open('wb'))
        assert self.process.stdout is not None
        self.lines = Lines(self.process.stdout.fileno(), client.marker, keep=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def quiet(self) -> None:
        """Wait until nothing was printed for :data:`QUIET` s (at most 30 s)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            count = self.lines.count
            time.sleep(QUIET)
            if self.lines.count == count:
                return

    def relists(self) -> int:
        """deploywatch's ``deploywatch_relists_total``; -1 while /metrics does not answer."""
        try:
            url = f'http://127.0.0.1:{self.metrics_port}/metrics'
            with urllib.request.urlopen(url, timeout=1) as response:
                text = response.read().decode()
        except OSError:
            return -1
        for line in text.splitlines():
            if line.startswith('deploywatch_relists_total '):
                return int(float(line.split()[1]))
        return -1

    def output(self) -> bytes:
        return b''.join(self.lines.kept)

    def stop(self) -> None:
        terminate(self.process, grace=10)


def prepared(plane: ControlPlane) -> Figures:
    """kube-apiserver restarted and idle: the state each measurement starts from."""
    restart = plane.restart_apiserver()
    return {'restart_s': restart, 'settle_s': plane.settle()}


def initial(setup: Setup, client: Client, *, name: str) -> tuple[Figures, Session]:
    """Spawn to the N-th object read; the session goes on (for the relist), the caller stops it."""
    figures = prepared(setup.plane)
    window = Window(setup.plane)
    running = Session(setup, client, name=name)
    running.lines.expect(setup.n)
    reached = running.lines.wait(60 + setup.n / 100)
    figures.update(window.close(reached))
    if reached is None:
        figures['error'] = (f'{running.lines.count} of {setup.n} in time '
                            f'(exit code {running.process.poll()}); see {running.stderr.name}')
        return figures, running
    figures.update(client_cpu_s=cpu_seconds(running.pid),
                   client_peak_rss_mb=memory_bytes(running.pid) / 2**20)
    running.quiet()
    return figures, running


def relist(setup: Setup, running: Session, key: str) -> Figures:
    """Stopped, kube-apiserver restarted, continued: to the end of its relist (module docstring)."""
    printed = running.lines.count
    os.kill(running.pid, signal.SIGSTOP)
    try:
        figures = prepared(setup.plane)
    except BaseException:
        os.kill(running.pid, signal.SIGCONT)
        raise
    window = Window(setup.plane)
    client_rss, client_cpu = PeakRss(running.pid), cpu_seconds(running.pid)
    os.kill(running.pid, signal.SIGCONT)
    deadline = window.started + 60 + setup.n / 100
    done: float | None = None
    if key == 'informer':
        running.lines.expect(printed + setup.n)
        done = running.lines.wait(deadline - time.monotonic())
    else:
        while time.monotonic() < deadline and running.process.poll() is None:
            if running.relists() >= 1:
                done = time.monotonic()
                break
            time.sleep(POLL)
    figures.update(window.close(done))
    figures.update(client_cpu_s=cpu_seconds(running.pid) - client_cpu,
                   client_peak_rss_mb=(client_rss.before + client_rss.stop()) / 2**20)
    if done is None:
        figures['error'] = f'no relist seen in time; see {running.stderr.name}'
    running.quiet()
    figures['check'] = apiserver_report.relist_check(key, running.output(), printed=printed, n=setup.n)
    return figures


def measure(setup: Setup, client: Client, *, repeat: int) -> Figures:
    key = KEYS[client.key]
    name = f'{key}-{repeat}'
    figures, running = initial(setup, client, name=name)
    try:
        if 'error' not in figures:
            figures['check'] = apiserver_report.initial_check(key, running.output(), n=setup.n)
        result: Figures = {'initial': figures}
        if setup.relists and key in RELISTS and 'error' not in figures:
            result['relist'] = relist(setup, running, key)
    finally:
        running.stop()
    return result


def _progress(what: str) -> None:
    print(f'  {what}', file=sys.stderr, flush=True)


def _wait_for_quiet_machine(limit: float, wait: float) -> tuple[float, float]:
    """Poll the 1-minute load every 30 s until it is below ``limit`` (at most ``wait`` s)."""
    started = time.monotonic()
    while os.getloadavg()[0] >= limit and time.monotonic() - started < wait:
        _progress(f'load {os.getloadavg()[0]:.2f} >= {limit}: waiting')
        time.sleep(30)
    return os.getloadavg()[0], time.monotonic() - started


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="What each client costs a real kube-apiserver "
                                                 "(bench/README.md, make bench-apiserver)")
    parser.add_argument('--version', default='1.37', choices=['1.37', '1.34'],
                        help="the control plane's Kubernetes version (default: %(default)s)")
    parser.add_argument('--no-relist', dest='relist', action='store_false',
                        help='only the start (v1.34 resumes the watch after a restart: no 410, no relist)')
    parser.add_argument('--count', type=int, default=20_000, help='Deployments (default: %(default)s)')
    parser.add_argument('--namespaces', type=int, default=20, help='spread over (default: %(default)s)')
    parser.add_argument('--repeats', type=int, default=5, help='runs of each client, interleaved')
    parser.add_argument('--only', nargs='*', choices=list(KEYS.values()), help='clients (default: all)')
    parser.add_argument('--reference', default=REFERENCE, help="the streaming deploywatch's commit")
    parser.add_argument('--load-below', type=float, default=1.5,
                        help='wait (up to --load-wait s) for the 1-minute load to fall below this first')
    parser.add_argument('--load-wait', type=float, default=600.0)
    parser.add_argument('--output', type=pathlib.Path, default=RESULTS / 'apiserver.json')
    return parser.parse_args()


def _clients(work: pathlib.Path, kubeconfig: pathlib.Path, commit: str,
             only: list[str] | None) -> tuple[list[Client], dict[str, str]]:
    """The four clients as ``bench.run`` builds them (the streaming one from ``commit``), and the missing."""
    skipped: dict[str, str] = {}
    reference = reference_snapshot(work, commit)
    if reference is None:
        skipped['streaming'] = f'git archive {commit} failed'
    informer, why = informer_binary()
    if informer is None:
        skipped['informer'] = why
    cache = work / 'kubectl-cache'
    subprocess.run([str(BIN / 'kubectl'), '--kubeconfig', str(kubeconfig), '--cache-dir', str(cache),
                    'api-resources'], check=False, capture_output=True, timeout=60)  # a user's warm cache
    made = clients(kubeconfig, cache, snapshot(work), reference, informer)
    made += [dataclasses.replace(c, key='informer-json', argv=(*c.argv, '-json'))
             for c in made if c.key == 'informer']
    listing = {'KUBE_FEATURE_WatchListClient': 'false'}  # client-go's env feature gates: a LIST, no stream
    made += [dataclasses.replace(c, key='informer-json-list', env={**c.env, **listing})
             for c in made if c.key == 'informer-json']
    chosen = [c for c in made if c.key in KEYS and (not only or KEYS[c.key] in only)]
    return sorted(chosen, key=lambda c: list(KEYS).index(c.key)), skipped


def _terminated(signum: int, _: Any) -> None:
    """SIGTERM as an exit: the ``finally`` blocks stop the clients and the control plane."""
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _terminated)
    arguments = _arguments()
    began = time.monotonic()
    _, waited = _wait_for_quiet_machine(arguments.load_below, arguments.load_wait)
    results: Figures = {
        'started': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
        'version': arguments.version,
        'count': arguments.count, 'namespaces': arguments.namespaces, 'repeats': arguments.repeats,
        'reference': arguments.reference, 'machine': machine(), 'load_waited_s': waited,
        'load_before': os.getloadavg(), 'runs': {}}
    logs = RESULTS / 'logs' / 'apiserver'
    logs.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix='deploywatch-bench-apiserver-'))
    try:
        with control_plane(arguments.version) as plane:
            _progress(f'control plane v{plane.version} on port {plane.port} in {plane.directory}')
            plane.quiet()
            _progress('kube-controller-manager stopped')
            made = populate.populate(plane.kubeconfig, count=arguments.count, namespaces=arguments.namespaces)
            results['made'] = {**dataclasses.asdict(made), 'per_second': made.per_second}
            _progress(f'{made.count:,} Deployments ({made.object_bytes:,} bytes each) '
                      f'in {made.seconds:.1f}s: {made.per_second:,.0f}/s, '
                      f'{made.requests / made.seconds:,.0f} requests/s')
            chosen, results['skipped'] = _clients(work, plane.kubeconfig, arguments.reference, arguments.only)
            setup = Setup(plane, plane.kubeconfig, arguments.count, logs, relists=arguments.relist)
            for repeat in range(arguments.repeats):
                for client in chosen:
                    key = KEYS[client.key]
                    result = measure(setup, client, repeat=repeat)
                    results['runs'].setdefault(key, []).append(result)
                    _progress(f'{key} #{repeat + 1}: {apiserver_report.brief(result)}')
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results['seconds'] = time.monotonic() - began
    results['load_after'] = os.getloadavg()
    results['summary'] = apiserver_report.summary(results['runs'])
    results['goals'] = apiserver_report.goals(results['summary'])
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(results, indent=2) + '\n')
    print(apiserver_report.render(results))
    shown = arguments.output.relative_to(REPO) if arguments.output.is_relative_to(REPO) else arguments.output
    print(f'\nWritten to {shown} in {results["seconds"]:.0f}s.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
