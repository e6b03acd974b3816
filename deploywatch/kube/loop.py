"""
deploywatch's own list-then-watch loop for Deployments, inside Kopf.

Kopf's watch loop (``continuous_watch`` of Kopf's watching client) lists,
watches, and lists again after ``410 Gone``, delivering listed objects to
``@kopf.on.event`` as events of type None. For an event stream that promises
"nothing lost", it falls short in three ways:

* an object known before a relist and *absent* from the new list was deleted
  while the stream was down, and Kopf never reports it (client-go calls it
  DeletedFinalStateUnknown); Kopf also keeps its per-object memory;
* any server error on the watch request (a burst of 5xx or 429) throws the
  stream back to a full relist, so every change in between collapses into one
  (or is lost, if the object came and went meanwhile), although the watch
  could simply have been resumed from the last resourceVersion;
* a ``403 Forbidden`` is retried forever (Kopf retries 403s on purpose, for
  API server upgrades), so a missing permission is an endless quiet loop.

And its per-event pipeline (a queue and a worker task per object, per-object
memory, cause detection, handler invocation) costs more than everything
deploywatch does with an event, and holds memory for every object: measured
with ``make bench``, a Kopf operator with one empty ``@kopf.on.event`` handler
is slower and bigger than deploywatch's whole work.

So for Deployments, deploywatch replaces the loop Kopf runs per watched
namespace (``infinite_watch``, which Kopf's queueing looks up at call time),
built from Kopf's own pieces (``fetch_objs`` and ``watch_objs`` with Kopf's login
and retries, as ``deploywatch.kube.listwatch`` has them, decoding with orjson), and
hands each event straight to ``deliver`` (the tracker and the writer) in stream
order. It pauses only while stdout is behind (:class:`Gate`, deploywatch's own):
peering's pause, which Kopf gives every watch, leaves a standby's Deployment
watches running (``deploywatch.runtime.pause``). Kopf
still runs everything else: the CLI, credentials, namespace observation and
globs, peering, liveness, start-up and clean-up. In this loop:

* a listing is paginated LISTs (pages of ``chunk_size``, each asked for while the one before
  is delivered: ``listwatch.fetch_objs``), not a streaming list (KEP-3157, ``sendInitialEvents``),
  although v1.34+ servers offer one and client-go's informers stream since v0.35: served from
  the watch cache, in JSON, a streaming list cost a v1.34 or v1.37 kube-apiserver twice the CPU
  and memory of the same listing in pages (``make bench-apiserver``, README), and pages cost
  it about what the Go informer's protobuf stream does;
* after each complete listing, the objects the tracker knows in that namespace
  but the listing lacks are delivered as DELETED, marked inferred; the stream
  is handled in order, so it cannot overtake a MODIFIED of the same object;
  one whose name a listed object of another uid now bears (deleted and recreated
  meanwhile) gets its DELETED *before* that object, so the stream never shows a
  name gone that exists;
* after an error, it waits (1 s, doubling up to 30 s) and *resumes the watch
  from the last resourceVersion*; only ``410 Gone`` (or an interrupted listing)
  leads to a relist;
* odd streams are errors like any other (:class:`OddStream`), not crashes nor hot
  loops: a response that ends cleanly in the middle of a line reaches Kopf's line
  decoder without its newline, and its ``ValueError`` (JSON, or UTF-8 when the cut
  falls inside a character) would end Kopf's watcher and the operator; a watch
  that ends within ``SHORT_WATCH`` seconds without a single event (a server or proxy
  answering 200 and closing at once) would be re-sent at once, forever — client-go's
  reflector calls it a "very short watch" and backs off, as this loop does;
* a watch the server cannot resume — a ``410 Gone`` as an ERROR event or as the
  HTTP status, or "too large resource version" (a 504 with the cause
  ``ResourceVersionTooLarge``, e.g. after etcd was restored from a backup) — leads
  to a relist, as client-go's reflector does; retrying the same resourceVersion
  would stall the stream silently forever;
* a 403 on listing or watching is retried with the same backoff for
  ``FORBIDDEN_GRACE`` seconds: an API server answers 403 for its first moments
  after a restart, before its RBAC caches are synced (kube-apiserver v1.24 does,
  measured in tests/robustness/test_apiserver_restart.py), and webhook authorizers
  do during upgrades. A 403 that persists past the bound is a missing permission:
  it is :class:`MissingPermission`, handed to ``Outlet.forbidden`` (the runtime's
  lifecycle), which stops the operator with status 3.

Requests of this loop get a short retry budget of their own (``OWN_BACKOFFS``, by a
copy of Kopf's settings), because the loop retries forever itself, resuming the
watch; Kopf's own loops (namespace observation for globs, peering) keep Kopf's
request-level budget, which ``deploywatch.handlers`` makes long enough to ride
out an API server that is away for minutes.

While the API server cannot be reached at all, Kopf's request layer logs an
ERROR for every attempt. :class:`OutageNotice` turns that into one warning when
the outage starts (Kopf's first line, with the details, is kept) and one line
when the server answers again; the repetitions in between are dropped unless
Kopf runs with ``--verbose``/``--debug``.

The private Kopf pieces are reached through ``deploywatch.kube.kopfcompat``, which
checks them at start-up.
"""
import asyncio
import contextlib
import contextvars
import copy
import dataclasses
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import aiohttp

from deploywatch.base.metrics import METRICS, Watch
from deploywatch.kube import kopfcompat, listwatch, scope
from deploywatch.model.tracker import identity

logger = logging.getLogger('deploywatch')

FORBIDDEN_GRACE = 30.0  # seconds of nothing but 403s before a missing permission is reported
BACKOFF_FIRST = 1.0
BACKOFF_LIMIT = 30.0
OWN_BACKOFFS = (0.5, 1.0, 2.0)  # Kopf's retries of each request of this loop, before it backs off itself
TOO_LARGE = 'ResourceVersionTooLarge'
EVENT_TYPES = frozenset({'ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR'})  # others count as 'other'
RELIST_QUIET = 60.0  # seconds without a relist after which the next one goes at once
SHORT_WATCH = 1.0  # seconds: a watch that ends sooner without any event is an error (client-go's rule)
YIELD_EVERY = 50  # listed objects delivered between two turns of the loop: a page is not one long turn


class OddStream(Exception):
    """A response that is not a stream of events: retried, with the backoff, as a broken watch."""


class MissingPermission(Exception):
    """A 403 that lasted: the one line that says what to grant; the operator stops with status 3."""


RETRIED = (kopfcompat.APIError, kopfcompat.WatchingError, aiohttp.ClientError, TimeoutError, OddStream)

# One event for the tracker and the writer: Kopf's watch type (None: listed), the object, inferred.
# Awaited: it waits, the loop turning, while stdout holds all the memory it may (deploywatch.output.writer).
Deliver = Callable[[str | None, Mapping[str, Any], bool], Awaitable[None]]
# The objects known in a namespace (None: all) that a complete listing did not contain.
Inferrer = Callable[[str | None, set[str]], list[dict[str, Any]]]
# The object known under a listed object's namespace/name with another uid (recreated meanwhile).
Replaced = Callable[[Mapping[str, Any]], list[dict[str, Any]]]
# The known objects whose namespace is outside what is watched (the predicate).
Outside = Callable[[Callable[[str | None], bool]], list[dict[str, Any]]]
# A missing permission, reported in one line: the operator stops with status 3 (the lifecycle's).
Forbid = Callable[[MissingPermission], None]
# Kopf's operator pause (a set of toggles: peering's), handed over when a watch starts.
PausedBy = Callable[[Any], Awaitable[None]]
T = TypeVar('T')

# The Deployment watch whose requests the current task sends (each watch runs in a task of its own).
LISTENING: contextvars.ContextVar[Watch | None] = contextvars.ContextVar('deploywatch_watch', default=None)


class Gate:
    """
    deploywatch's own pause of its Deployment watches: while closed (stdout is behind), each
    watch closes its request and waits; it resumes from its resourceVersion once open again.
    """

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._closed = asyncio.Event()
        self._open.set()

    def is_closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._open.clear()
        self._closed.set()

    def open(self) -> None:
        self._closed.clear()
        self._open.set()

    async def opened(self) -> None:
        await self._open.wait()

    async def closed(self) -> None:
        await self._closed.wait()


class OutageNotice(logging.Filter):
    """Kopf's per-attempt connection errors, as one warning per outage."""

    SIGNS = ('ClientConnectorError', 'ClientOSError', 'ServerDisconnectedError')

    def __init__(self) -> None:
        super().__init__()
        self.since: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if not any(sign in record.getMessage() for sign in self.SIGNS):
            return True
        if self.since is None:
            self.since = time.monotonic()
            logger.warning("The Kubernetes API server cannot be reached; retrying until it answers. "
                           "Nothing is lost: what changes meanwhile is reported when it is back.")
            return True
        return logging.getLogger().getEffectiveLevel() <= logging.DEBUG

    def recovered(self) -> None:
        if self.since is not None:
            logger.warning(f"The Kubernetes API server answers again after "
                           f"{time.monotonic() - self.since:.0f}s; reporting what changed meanwhile.")
            self.since = None


NOTICE = OutageNotice()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outlet:
    """Where the loop's events go, and whom it tells of what stops or pauses it."""
    deliver: Deliver
    unlisted: Inferrer
    replaced: Replaced
    gate: Gate  # closed while stdout is behind
    forbidden: Forbid
    paused_by: PausedBy  # Kopf's operator pause, for the runtime to follow (peering)


def install(*, outlet: Outlet, outside: Outside) -> None:
    """Route Kopf's per-namespace watch loops through :func:`supervise` from now on."""
    def infinite_watch(**kwargs: Any) -> AsyncIterator[Any]:
        return supervise(outlet=outlet, **kwargs)

    listwatch.gunzip_with_isal()

    kopfcompat.install(watch_loop=infinite_watch, log_filter=NOTICE, on_answer=_note_answer,
                       after_adjusting=scope.EndUnwatched(deliver=outlet.deliver, outside=outside))


def _note_answer() -> None:
    """
    An answer to a request (a 2xx; Kopf raises on the others), noted for the watch that sent it.

    An answer is the API server speaking, even when the watch it opens then stays quiet:
    with no Deployment changed since the API server started, it sends no BOOKMARK at all
    (measured on v1.24 and v1.28), and Kopf ends a stream silent for 70 s
    (``settings.watching.inactivity_timeout``) and opens another. Only a server that does
    not answer at all leaves a watch silent for long.
    """
    watch = LISTENING.get()
    if watch is not None:
        METRICS.heard(watch)


async def supervise(*, outlet: Outlet, settings: Any, resource: Any, namespace: Any,
                    operator_paused: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
    """
    What Kopf's watcher runs for each resource and namespace: Kopf's own loop for namespaces,
    CRDs and peering (with Kopf's pause), this module's for Deployments (with :class:`Gate`).
    """
    if operator_paused is not None:
        await outlet.paused_by(operator_paused)
    if not scope.is_deployments(resource):
        original = kopfcompat.kopf_infinite_watch(settings=settings, resource=resource, namespace=namespace,
                                                  operator_paused=operator_paused, **kwargs)
        if scope.is_namespaces(resource):  # starts the watches of globs
            original = _noted_namespaces(scope.listings_as_events(original))
        async for item in original:
            yield item
        return

    where = f'in namespace {namespace!r}' if namespace else 'cluster-wide'
    watch = Watch(where, paused=outlet.gate.is_closed)
    METRICS.watching(watch)  # for the liveness probe and /metrics, while this loop runs
    try:
        async for item in _list_and_watch(outlet=outlet, settings=settings, resource=resource,
                                          namespace=namespace, watch=watch):
            yield item
    except MissingPermission as error:
        outlet.forbidden(error)
        await asyncio.Event().wait()  # the operator is stopping: this loop is cancelled with it
    finally:
        METRICS.unwatching(watch)


async def _noted_namespaces(original: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """
    Kopf's watch of namespaces (``--namespace`` globs), noted for the liveness probe: when it
    heard from the API server (events, BOOKMARKs, answers), and why it ended. It is what
    starts a Deployment watch when a matching namespace appears (``metrics.Metrics``).
    """
    watch = METRICS.namespaces = Watch('of namespaces', paused=lambda: False)
    LISTENING.set(watch)  # in the task of Kopf's namespace observer, for _note_answer
    try:
        async for item in original:
            METRICS.heard(watch)
            yield item
    except Exception as error:  # Kopf's observer then logs it and watches no more (a 403)
        METRICS.namespaces_ended = f'{type(error).__name__}: {error}'
        raise
    finally:
        METRICS.namespaces = None


@dataclasses.dataclass
class _Position:
    """Where a Deployment watch is, across its requests."""
    version: str | None = None  # where the watch resumes; None: list first
    backoff: float = BACKOFF_FIRST  # before the next attempt after an error


async def _list_and_watch(*, outlet: Outlet, settings: Any, resource: Any, namespace: Any,
                          watch: Watch) -> AsyncIterator[Any]:
    """
    List, then watch from the listing's resourceVersion (:func:`_listen`), resuming after
    errors; list again only when the watch cannot resume (410, too large) or a listing failed.
    """
    where = watch.where
    LISTENING.set(watch)  # in the task that runs this loop, for _note_answer
    own = _with_backoffs(settings, OWN_BACKOFFS)
    position = _Position()
    forbidden, pace = Forbidden(where=where), RelistPace()
    while True:
        try:
            was_paused = watch.paused()
            async with _open_while(outlet.gate, resource=resource, namespace=namespace) as paused:
                if was_paused:  # a pause is not silence: the clock starts again
                    METRICS.heard(watch)
                async for item in _listen(position, paused, outlet=outlet, settings=own, resource=resource,
                                          namespace=namespace, watch=watch, forbidden=forbidden, pace=pace):
                    yield item
        except RETRIED as error:
            if _failed(error):
                logger.debug(f"Watch of deployments {where} cannot resume ({error!r}): listing again.")
                position.version = None
                continue
            backoff = position.backoff
            if isinstance(error, kopfcompat.APIForbiddenError):
                forbidden.seen(error, backoff=backoff)
            else:
                then = 'resuming the watch' if position.version is not None else 'listing again'
                logger.warning(f"Watching deployments {where} failed ({error!r}); {then} in {backoff:.0f}s.")
            await asyncio.sleep(backoff)
            position.backoff = min(backoff * 2, BACKOFF_LIMIT)


async def _listen(position: _Position, paused: asyncio.Future[None], *, outlet: Outlet, settings: Any,
                  resource: Any, namespace: Any, watch: Watch, forbidden: 'Forbidden',
                  pace: 'RelistPace') -> AsyncIterator[Any]:
    """List if need be, then watch, until paused or a relist is needed; ``LISTED`` after a listing."""
    if position.version is None:
        position.version = await _relist(outlet=outlet, settings=settings, resource=resource,
                                         namespace=namespace, watch=watch, pace=pace)
        forbidden.cleared()
        yield kopfcompat.LISTED  # Kopf's readiness waits for it
    while position.version is not None and not paused.done():
        began, seen = time.monotonic(), 0
        async for raw in _decoded(listwatch.watch_objs(
                settings=settings, resource=resource, namespace=namespace, since=position.version,
                operator_pause_waiter=paused)):
            kind, body = _event(raw)  # before anything counts it as the server speaking
            seen += 1
            NOTICE.recovered()
            forbidden.cleared()
            position.backoff = BACKOFF_FIRST
            METRICS.heard(watch, kind if kind in EVENT_TYPES else 'other')
            if kind == 'ERROR' and _needs_relist(body.get('code'), body):
                logger.debug(f"Watch of deployments {watch.where} cannot resume ({body}): relisting.")
                _count(body.get('code'), 'expired')
                position.version = None
                break
            if kind == 'ERROR':
                raise kopfcompat.WatchingError(f'Error in the watch-stream: {body}')
            if kind not in ('ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK'):
                continue
            position.version = body.get('metadata', {}).get('resourceVersion', position.version)
            if kind != 'BOOKMARK':
                await outlet.deliver(kind, body, False)
        if not seen and not paused.done() and time.monotonic() - began < SHORT_WATCH:
            raise OddStream('the watch ended at once, without any event')


@contextlib.asynccontextmanager
async def _open_while(gate: Gate, *, resource: Any, namespace: Any) -> AsyncIterator[asyncio.Future[None]]:
    """
    Wait while the gate is closed; then a task that ends when it closes again, which closes
    the watch request (``listwatch.watch_objs``'s ``operator_pause_waiter``).

    On the way out the task is cancelled and awaited without swallowing a cancellation of
    the loop's own (Kopf's at SIGTERM): a loop that swallowed it would go on forever.
    The debug lines are Kopf's own, as its ``streaming_block`` writes them for its pause.
    """
    if gate.is_closed():
        where = f'in {namespace!r}' if namespace is not None else 'cluster-wide'
        logger.debug(f"Pausing the watch-stream for {resource} {where} (blockers: stdout is behind).")
        await gate.opened()
        logger.debug(f"Resuming the watch-stream for {resource} {where}.")
    closing = asyncio.ensure_future(gate.closed())
    try:
        yield closing
    finally:
        closing.cancel()
        await asyncio.wait([closing])  # raises CancelledError only if this task is cancelled


def _event(raw: Any) -> tuple[str, dict[str, Any]]:
    """
    A watch line's type and object; :class:`OddStream` for a line that is not an event (no
    type string, an object that is not a map): a broken server or proxy, resumed as any
    broken stream, never an exception out of the loop.
    """
    kind = raw.get('type') if isinstance(raw, dict) else None
    body = raw.get('object') if isinstance(raw, dict) else None
    if not isinstance(kind, str) or not isinstance(body, dict):
        raise OddStream(f'a watch line is not an event: {str(raw)[:200]}')
    return kind, body


def _failed(error: Exception) -> bool:
    """
    Count a failed request of this loop (by its HTTP status, or what failed without one) and
    the watch restart it causes; whether the watch cannot resume (the loop lists again).
    """
    status = getattr(error, 'status', None)
    expired = _needs_relist(status, getattr(error, 'details', None))
    if status is None:
        status = 'stream' if isinstance(error, OddStream | kopfcompat.WatchingError) else 'connection'
    _count(status, 'expired' if expired else 'forbidden' if status == 403 else 'error')
    return expired


def _count(code: object, reason: str) -> None:
    METRICS.api_errors[str(code)] += 1
    METRICS.restarts[reason] += 1


def _needs_relist(code: object, status: object) -> bool:
    """
    Whether the watch cannot resume from its resourceVersion: 410 Gone (the history
    has moved on), or 504 "too large resource version" (the server is behind what this
    watch saw: etcd restored from a backup, or a lagging replica), both as client-go's
    reflector treats them. ``status`` is the Status body, or its ``details``.
    """
    if code == 410:
        return True
    if not isinstance(status, dict):
        return False
    details = status.get('details', status)
    causes = details.get('causes') if isinstance(details, dict) else None
    return code == 504 and isinstance(causes, list) and any(
        isinstance(c, dict) and c.get('reason') == TOO_LARGE for c in causes)


def _with_backoffs(settings: Any, backoffs: tuple[float, ...]) -> Any:
    """Kopf's settings with another request retry budget, for this loop's own requests."""
    own = copy.copy(settings)
    own.networking = dataclasses.replace(settings.networking, error_backoffs=backoffs)
    return own


class RelistPace:
    """
    How long to wait before a relist: none after ``RELIST_QUIET`` seconds without one, then 1 s
    doubling up to 30 s. A server that answers every watch with 410 (a lagging replica, a
    cache that cannot catch up) gave one full LIST after another, 30 in 0.09 s; client-go's
    reflector paces its relists with a backoff for the same reason.
    """

    def __init__(self) -> None:
        self.delay = 0.0
        self.last = -math.inf

    async def wait(self) -> None:
        if time.monotonic() - self.last > RELIST_QUIET:
            self.delay = 0.0
        if self.delay:
            logger.debug(f"Relisting again within {RELIST_QUIET:.0f} s: waiting {self.delay:.0f} s first.")
            METRICS.relist_waits += 1
            await asyncio.sleep(self.delay)
        self.delay = min(max(self.delay * 2, BACKOFF_FIRST), BACKOFF_LIMIT)
        self.last = time.monotonic()


class Forbidden:
    """
    Consecutive 403s on listing or watching: one warning when they start, and
    :class:`MissingPermission` once they have lasted ``FORBIDDEN_GRACE`` seconds.
    """

    def __init__(self, *, where: str) -> None:
        self.where = where
        self.since: float | None = None

    def seen(self, error: Any, *, backoff: float) -> None:
        """A 403 (Kopf's ``APIForbiddenError``), about to be retried in ``backoff`` seconds."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
            logger.warning(f"Forbidden to read deployments {self.where} ({error.message or error}); "
                           f"retrying for up to {FORBIDDEN_GRACE:.0f}s, as an API server that has just "
                           "started answers 403 until its RBAC caches are synced.")
        if now - self.since + backoff >= FORBIDDEN_GRACE:
            raise MissingPermission(
                f"forbidden to read deployments {self.where}: {error.message or error}. "
                "Grant list and watch on deployments.apps (see manifests/base/rbac.yaml).")

    def cleared(self) -> None:
        if self.since is not None:
            logger.warning(f"Reading deployments {self.where} is allowed again after "
                           f"{time.monotonic() - self.since:.0f}s of 403 answers.")
            self.since = None


class Listing:
    """
    One listing as it is delivered, object by object: each listed
    object (watch type None) after the inferred DELETED of one known under its name with
    another uid (deleted and recreated meanwhile), and at its end the inferred DELETEDs of
    the known objects it lacked.

    The name is checked per object, as the objects arrive (10,000 Deployments are not held in
    memory at once). Every :data:`YIELD_EVERY` objects the loop turns: a paginated listing's
    next page, asked for when this one arrived, goes out and is served meanwhile, and the
    loop's other work (the liveness probe, peering's keep-alive) does not wait for a whole
    page. The cyclic garbage collector is held off from the first object
    to the end, for the other tasks too (``listwatch.collector_held``): what they leave
    meanwhile is collected after. :meth:`close` releases it, whether the listing ended or not.
    """

    def __init__(self, *, outlet: Outlet, namespace: Any, watch: Watch) -> None:
        self.outlet, self.namespace, self.watch = outlet, namespace, watch
        self.listed: set[str] = set()
        self._held = contextlib.ExitStack()
        self._held.enter_context(listwatch.collector_held())

    async def add(self, obj: Mapping[str, Any]) -> None:
        self.listed.add(identity(obj))
        METRICS.listed += 1  # heard as the answer or the event arrived (_note_answer): no stall
        for gone in self.outlet.replaced(obj):
            await self.outlet.deliver('DELETED', gone, True)
        await self.outlet.deliver(None, obj, False)
        if len(self.listed) % YIELD_EVERY == 0:
            await asyncio.sleep(0)

    async def end(self) -> None:
        """The listing is complete: the known objects it lacked were deleted meanwhile."""
        self.close()
        NOTICE.recovered()
        for gone in self.outlet.unlisted(self.namespace, self.listed):
            await self.outlet.deliver('DELETED', gone, True)
        METRICS.listed_by(self.watch)

    def close(self) -> None:
        self._held.close()


async def _relist(*, outlet: Outlet, settings: Any, resource: Any, namespace: Any, watch: Watch,
                  pace: RelistPace) -> str:
    """
    List with pages (``listwatch.fetch_objs``), deliver it (:class:`Listing`); the listing's
    resourceVersion.

    A function of its own so that the last page of objects is freed when it returns,
    not kept alive by a loop variable for as long as the watch that follows runs.
    """
    if watch.listings:  # a relist: at once, unless the one before was recent
        await pace.wait()
    listed_at = ''
    listing = Listing(outlet=outlet, namespace=namespace, watch=watch)
    try:
        async for chunk, chunk_version in _decoded(listwatch.fetch_objs(
                settings=settings, resource=resource, namespace=namespace, logger=logger)):
            listed_at = chunk_version  # the same for every page of one listing
            for obj in _decoded_items(chunk):
                await listing.add(obj)
            del chunk
    finally:
        listing.close()  # until the last page is freed: see listwatch.collector_held
    await listing.end()
    return listed_at


async def _decoded(stream: AsyncIterator[T]) -> AsyncIterator[T]:
    """
    Kopf's stream, with a response that does not decode turned into :class:`OddStream`.

    Only what the stream itself raises is turned: the body of the caller's loop (the
    tracker, the writer) runs outside this generator, so a ``ValueError`` of its own is
    never taken for a broken line and retried. An item is let go as soon as the caller is
    done with it: held until the next one came, a LIST page stayed alive while the next page
    was decoded (two pages at once: 11 MB more at the peak of 20,000 Deployments).
    """
    try:
        async for item in stream:
            yield item
            del item
    except ValueError as error:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise OddStream(f'a line of the response does not decode ({error}): cut short?') from error


def _decoded_items(page: Iterable[T]) -> Iterator[T]:
    """
    A page's items, as :func:`_decoded` has a stream's: a page's items are decoded as they are
    delivered (``pages.Page``), so one that does not decode is :class:`OddStream`, retried, while
    a ``ValueError`` of the delivery's own, outside this generator, is not.
    """
    try:
        yield from page
    except ValueError as error:
        raise OddStream(f'an item of a LIST page does not decode ({error})') from error


async def may_list_namespaces(*, settings: Any) -> None:
    """
    With a ``--namespace`` glob, a 403 on listing namespaces is :class:`MissingPermission`, as
    for Deployments. Kopf falls back to the exact namespaces given when it may not list them,
    and a glob gives none: no Deployment watch would ever start, the stream stay empty and
    the process look healthy, while Kopf retries its listing for minutes. Run once, as soon
    as Kopf has logged in; other failures are left to Kopf's own loop, which retries them.
    """
    try:
        response = await kopfcompat.request('get', '/api/v1/namespaces?limit=1',
                                            settings=_with_backoffs(settings, OWN_BACKOFFS), logger=logger)
        response.close()
    except kopfcompat.APIForbiddenError as error:
        raise MissingPermission(f"forbidden to list namespaces: {error.message or error}. A --namespace "
                                "glob needs list and watch on namespaces "
                                "(see manifests/components/namespace-globs/rbac.yaml).") from None
    except RETRIED:
        pass
