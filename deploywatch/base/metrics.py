"""
What deploywatch counts, for Prometheus (``/metrics``) and for its liveness probe.

The counts are plain integers, bumped where the thing happens (the watch loop, the
writer thread) and turned into metric families only when Prometheus scrapes
(:class:`Collector`): a ``prometheus_client.Counter`` takes a lock per increment, a
cost paid per event. The server is prometheus_client's own, a daemon thread, so it
answers while the event loop is busy with a listing. Names follow Prometheus'
conventions, and no label has a value per Deployment or namespace (each value is a
time series).

Staleness is per Deployment watch: a :class:`Watch` notes when it last heard from the
API server (an event, a BOOKMARK, a page of a listing, or any answer to its requests:
a quiet cluster sends no BOOKMARK). A watch paused on purpose is not silent. With no
Deployment watch at all (a ``--namespace`` glob matching nothing yet), the process is
healthy only while Kopf's watch of namespaces (:attr:`Metrics.namespaces`) is there to
start one. :meth:`Metrics.unhealthy` is what the liveness probe reports.
"""
import collections
import dataclasses
import time
from collections.abc import Callable, Iterator

import prometheus_client
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as _CollectorBase

from deploywatch.base.settings import Misconfigured

PREFIX = 'deploywatch_'


def _zero() -> int:
    return 0


@dataclasses.dataclass(eq=False)
class Watch:
    """One running Deployment watch: where, and when it last heard from the API server."""
    where: str
    paused: Callable[[], bool]  # whether Kopf's pause toggles hold it (then it is not silent)
    heard: float = dataclasses.field(default_factory=time.monotonic)
    listings: int = 0  # complete listings so far: all but the first are relists

    def silence(self, now: float) -> float:
        return 0.0 if self.paused() else max(0.0, now - self.heard)


@dataclasses.dataclass(eq=False)
class Metrics:
    """Everything counted, as plain numbers; the sources are the live objects read at scrape time."""
    printed: collections.Counter[tuple[str, bool]] = dataclasses.field(default_factory=collections.Counter)
    watch_events: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    restarts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    api_errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    listed: int = 0
    relists: int = 0
    relist_waits: int = 0  # relists that waited for the one before (RelistPace)
    resync_rounds: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    last_heard: float | None = None  # Unix time of the last event or BOOKMARK of any watch
    watches: set[Watch] = dataclasses.field(default_factory=set)
    unwatched_since: float = dataclasses.field(default_factory=time.monotonic)  # start, or last watch's end
    namespaces: Watch | None = None  # Kopf's watch of namespaces (--namespace globs), while it runs
    namespaces_ended: str | None = None  # why Kopf's watch of namespaces ended, if it did
    tracked: Callable[[], int] = _zero  # Deployments remembered
    dropped: Callable[[], int] = _zero  # lines not printed (the reader gone, stdout failed, a stop)
    pending: Callable[[], int] = _zero  # bytes of lines waiting to be written
    blocked: Callable[[], float] = float  # seconds the writer spent in write/flush to stdout
    failure: Callable[[], str | None] = lambda: None  # why the process is failing, if it is

    def line_written(self, kind: str, inferred: bool) -> None:
        """Called by the writer thread for each line stdout took."""
        self.printed[kind, inferred] += 1

    def heard(self, watch: Watch, kind: str | None = None) -> None:
        """The API server spoke to ``watch``: an event of ``kind``, or (None) a completed listing."""
        watch.heard = time.monotonic()
        if kind is not None:
            self.watch_events[kind] += 1
            self.last_heard = time.time()

    def listed_by(self, watch: Watch) -> None:
        """``watch`` completed a listing."""
        self.relists += watch.listings > 0
        watch.listings += 1
        self.heard(watch)

    def watching(self, watch: Watch) -> None:
        """A Deployment watch starts."""
        self.watches.add(watch)

    def unwatching(self, watch: Watch) -> None:
        """A Deployment watch ends."""
        self.watches.discard(watch)
        if not self.watches:
            self.unwatched_since = time.monotonic()

    def stalest(self) -> Watch | None:
        now = time.monotonic()
        return max(self.watches, key=lambda watch: watch.silence(now), default=None)

    def unhealthy(self, stall_seconds: float) -> str | None:
        """Why the liveness probe must fail now, or None. ``stall_seconds`` 0: no stall check."""
        failure = self.failure()
        if failure:
            return failure
        stalest = self.stalest()
        if stall_seconds and stalest is not None:
            silence = stalest.silence(time.monotonic())
            if silence > stall_seconds:
                return (f"the Deployment watch {stalest.where} has heard nothing from the API server "
                        f"(no event, no BOOKMARK) for {silence:.0f}s, over DEPLOYWATCH_STALL_SECONDS="
                        f"{stall_seconds:g}")
        if stall_seconds and not self.watches:
            now = time.monotonic()
            return self._unwatched_too_long(now - self.unwatched_since, now=now, stall_seconds=stall_seconds)
        return None

    def _unwatched_too_long(self, alone: float, *, now: float, stall_seconds: float) -> str | None:
        """No Deployment watch for ``alone`` seconds: too long without a live watch of namespaces?"""
        if alone <= stall_seconds:
            return None
        head = (f"no Deployment watch has run for {alone:.0f}s, "
                f"over DEPLOYWATCH_STALL_SECONDS={stall_seconds:g}")
        if self.namespaces is None:
            why = ("Kopf has started none (with a --namespace glob: it has not listed the namespaces)"
                   if self.namespaces_ended is None
                   else f"Kopf's watch of namespaces ended ({self.namespaces_ended})")
            return f"{head}, and nothing will start one: {why}"
        silence = self.namespaces.silence(now)
        if silence > stall_seconds:
            return (f"{head}, and Kopf's watch of namespaces, which would start one, has heard nothing "
                    f"from the API server for {silence:.0f}s (a 403 on watching namespaces is retried "
                    "for minutes: see Kopf's log; a --namespace glob needs list and watch on namespaces)")
        return None

    def unwatched(self) -> str | None:
        """Why no Deployment watch runs while the probe is healthy, or None if some do."""
        if self.watches:
            return None
        if self.namespaces is not None:
            return ("no namespace matches the --namespace patterns now; Kopf's watch of namespaces "
                    "starts a Deployment watch when one appears")
        return (f"no Deployment watch for {time.monotonic() - self.unwatched_since:.0f}s, and no watch of "
                "namespaces: Kopf has not started them yet (unhealthy past DEPLOYWATCH_STALL_SECONDS)")


class Collector(_CollectorBase):
    """:class:`Metrics` as Prometheus metric families, built at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        printed = CounterMetricFamily(PREFIX + 'events', 'Event lines written to stdout, by type; '
                                      'inferred: deduced from a listing or the state file, not seen',
                                      labels=['type', 'inferred'])
        for (kind, inferred), count in sorted(list(m.printed.items())):
            printed.add_metric([kind, 'true' if inferred else 'false'], count)
        yield printed
        yield CounterMetricFamily(PREFIX + 'events_dropped', 'Event lines not printed: the reader '
                                  'went away, stdout failed, or the process stopped with lines queued',
                                  value=m.dropped())
        yield _by(PREFIX + 'watch_events', 'Events read from the Deployment watch streams, by type',
                  'type', m.watch_events)
        yield CounterMetricFamily(PREFIX + 'listed_objects', 'Deployments read from complete listings',
                                  value=m.listed)
        yield CounterMetricFamily(PREFIX + 'relists', 'Listings after a watch\'s first: '
                                  'the watch could not resume (410 Gone, or a broken listing)',
                                  value=m.relists)
        yield CounterMetricFamily(PREFIX + 'relist_waits', 'Relists that waited first, because the one '
                                  'before was less than a minute ago (1 s, doubling up to 30 s)',
                                  value=m.relist_waits)
        yield _by(PREFIX + 'resync_rounds', 'RESYNC rounds, by outcome: printed; cut (stopped part way: '
                  'stdout behind); skipped (stdout had not kept up for an interval, or a standby)',
                  'outcome', m.resync_rounds)
        yield _by(PREFIX + 'watch_restarts', 'Deployment watches restarted after a failure, by reason: '
                  'error (resumed), expired (410: listed again), forbidden (403)', 'reason', m.restarts)
        yield _by(PREFIX + 'api_errors', 'Failed requests of the Deployment watch loop, by HTTP status '
                  '(connection: no answer)', 'code', m.api_errors)
        yield GaugeMetricFamily(PREFIX + 'deployments_tracked', 'Deployments known now',
                                value=m.tracked())
        watches = list(m.watches)
        yield GaugeMetricFamily(PREFIX + 'watches', 'Deployment watches running (one per namespace, '
                                'or one cluster-wide)', value=len(watches))
        now = time.monotonic()
        yield GaugeMetricFamily(PREFIX + 'watch_stalest_seconds', 'Seconds since the stalest running '
                                'Deployment watch last heard from the API server (event, BOOKMARK or '
                                'listing); 0 while paused', value=max((w.silence(now) for w in watches),
                                                                      default=0.0))
        if m.last_heard is not None:
            yield GaugeMetricFamily(PREFIX + 'last_event_timestamp_seconds', 'Unix time of the last '
                                    'event or BOOKMARK read from any Deployment watch', value=m.last_heard)
        yield CounterMetricFamily(PREFIX + 'stdout_blocked_seconds', 'Seconds the writer thread spent '
                                  'writing to stdout: a slow reader shows here', value=m.blocked())
        yield GaugeMetricFamily(PREFIX + 'stdout_pending_bytes', 'Bytes of lines waiting to be '
                                'written to stdout', value=m.pending())


def _by(name: str, documentation: str, label: str, counts: collections.Counter[str]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(list(counts.items())):
        family.add_metric([value], count)
    return family


METRICS = Metrics()


def serve(port: int, metrics: Metrics = METRICS) -> None:
    """
    Serve ``/metrics`` (prometheus_client's server, a daemon thread) on every interface;
    a port that cannot be bound is :class:`Misconfigured`: it stops the program before it connects.
    """
    prometheus_client.REGISTRY.register(Collector(metrics))
    try:
        prometheus_client.start_http_server(port)
    except OSError as error:
        raise Misconfigured(f"cannot serve metrics on port {port} (DEPLOYWATCH_METRICS_PORT): "
                            f"{error.strerror or error}.") from None
