"""
The Kopf wiring of deploywatch: which handlers, which settings, and why.

``kopf run operator/handlers.py`` (or ``kopf run -m deploywatch.handlers``)
imports this module; importing it validates ``DEPLOYWATCH_*`` and registers
the handlers below. Everything else in the package is plain Python.

Which Kopf handlers, and why only these
=======================================

deploywatch must see *every* change of every Deployment (spec, metadata and
status alike), never write to the cluster, and never leak per-object work.

* ``@kopf.on.event`` is the one handler kind that meets all three. It is meant
  for each raw watch event: objects found by the initial listing (type None),
  ADDED, MODIFIED — status-only updates from the deployment controller included
  — and DELETED, with the object as the API server last sent it. It keeps no
  progress on the object, so Kopf never PATCHes it, and it needs no finalizer.
  Its registration is what makes Kopf watch Deployments in the namespaces
  given; the events themselves go from deploywatch's watch loop straight to
  :func:`deliver` (see "Beyond handlers" below).

* Not ``@kopf.on.create/update/resume``: they store a "last handled"
  annotation (a PATCH per object) and ignore ``status`` unless a handler names
  a status field, so a rollout progressing would not be a change.

* Not ``@kopf.on.delete``: a plain delete of an object without finalizers
  arrives as one DELETED watch event, which ``on.delete(optional=True)`` never
  sees; without ``optional`` it adds a finalizer, making every deletion wait
  for deploywatch (and hang while it is down).

* Not ``@kopf.timer``/``@kopf.daemon`` for RESYNC: they add a finalizer by
  default (kopf issue 1074), and without it Kopf never stops the timer of a
  deleted object (no ``deletionTimestamp`` ever arrives), so every deletion
  would leave a task running forever. RESYNC is one operator-wide task started
  at start-up instead (``deploywatch.runtime.resync``).

Settings that keep it read-only and quiet
=========================================

* ``posting.enabled = False``: Kopf posts Kubernetes Events (a write) for
  handler outcomes; deploywatch creates no Events.
* Peering is off (``standalone``) unless ``--peering NAME`` is given: peering
  PATCHes a KopfPeering object, a write that a single watcher does not need.
* Kopf's own requests (namespace observation behind globs, peering) get a retry
  budget of about five minutes (``KOPF_BACKOFFS``) instead of Kopf's 54 s: Kopf
  stops the operator when one of its loops gives up, and an API server restart or
  upgrade can take longer than a minute. deploywatch's watch loop retries its own
  requests forever, resuming the watch where it broke (``deploywatch.kube.loop``).
* Listings are paginated (``LIST_CHUNK``): 10,000 Deployments are not one
  60 MB response decoded at once.
* What exists once the operator is configured (Kopf, aiohttp, the kubernetes
  client and their modules: most of the heap's objects, all of them for the
  process's life) is moved out of the cyclic garbage collector's walks
  (``gc.freeze()``): each full collection walked it all again, while a listing
  or a burst of events allocates fast enough to cause one every few pages. Only
  cycles among those objects could go uncollected, and they are not garbage.
* Per-event INFO logs of Kopf ("Handler ... succeeded") are dropped unless
  ``--verbose``/``--debug`` is given: the event itself is on stdout, and at
  thousands of events a second the duplicate log line is most of the cost.
* Scanning of namespaces and CRDs is off unless a ``--namespace`` pattern is a
  glob: Deployments are built in, so CRD watching is useless, and namespace
  watching is only needed to resolve globs. This keeps the RBAC to
  list and watch on deployments (plus list/watch on namespaces and CRDs only
  for glob patterns).

Beyond handlers
===============

For Deployments, deploywatch runs its own list-then-watch loop inside Kopf
(``deploywatch.kube.loop``): it knows when a listing is complete (so deletions
missed while disconnected are reported, marked inferred), resumes a broken
watch where it broke, stops on 403, and delivers each event to :func:`deliver`
in stream order, skipping Kopf's per-object queues and workers, which cost
more time and memory than deploywatch's own work (``make bench``).

Everything runs on the event loop: the tracker is only touched from there,
where the RESYNC task also runs, so no lock is needed and no RESYNC can
interleave with a DELETED. (The handler is ``async`` for the same reason:
Kopf would run a sync one in a thread pool.) Only the writing of lines to stdout
that would wait happens in a thread (``deploywatch.output.writer.Spool``), so that a slow
reader does not stop the loop, which also serves Kopf's liveness probe and peering
keep-alive; what a pipe takes at once, the loop writes itself when it turns.

Kopf's operator pause, and deploywatch's own
============================================

Kopf pauses the watches of a paused operator (``operator_paused``, a set of
toggles: peering puts one there per peering object) and hands that set to each
watch it starts; deploywatch's loop hands it on to :class:`Pause`, which reads it
through the set's public calls (``is_on``, ``wait_for``). The Deployment watches do
not pause with it; they have a gate of their own (``deploywatch.kube.loop.Gate``):

* closed while the writer's memory is over its bound: the Deployment watches then
  close and wait, and resume from their resourceVersion when the reader has caught
  up; the unread changes wait in the API server, not here
  (``deploywatch.output.writer`` has the bounds);
* while any of Kopf's toggles is on (peering: another replica leads), this replica
  is a standby. Its Deployment watches go on (peering does not pause them), so
  its memory follows the cluster, as every replica's informer cache does in client-go.
  It prints only the ends of its own stream: the DELETED of a Deployment it printed.
  The lines still waiting to be written when it lost the lead are written: they are
  what it saw while it led. RESYNC skips its rounds. When it leads again it prints
  the DELETED lines it kept (for :data:`STANDBY_MEMORY` seconds: the other replica may
  have stopped before it saw them) and the current state of every Deployment (ADDED,
  ``initial``), as a start would. So the replicas' streams together hold every
  deletion, and every other change as an event or folded into that state; the
  changes seen by both around a hand-over carry the same ``id``.

Failures are loud
=================

A background task that dies (the state file's saver, RESYNC, the pause follower),
a line stdout refuses (a full disk), or a failed final save is an ERROR on stderr
and stops the operator the normal way (SIGTERM to itself, so the clean-up still
saves what was written); the process then exits with status 1
(:data:`FAILURE_EXIT`) instead of 0.
"""
import asyncio
import atexit
import collections
import dataclasses
import functools
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

import kopf

from deploywatch.base import metrics
from deploywatch.base import settings as settings_module
from deploywatch.kube import loop as watching
from deploywatch.kube import scope
from deploywatch.kube.preflight import check_credentials_or_exit
from deploywatch.model.tracker import Tracker, identity
from deploywatch.output import cloudevents
from deploywatch.output.shaping import Shaper
from deploywatch.output.text import TextEncoder
from deploywatch.output.writer import HIGH_WATER, Encoder, LineWriter, Spool, stdout
from deploywatch.output.writer import encode as encode_json
from deploywatch.runtime import state
from deploywatch.runtime.resync import resync_forever

logger = logging.getLogger('deploywatch')

FAILURE_EXIT = 1
DRAIN_SECONDS = 3.0  # at shutdown, how long the lines still waiting may take to be written
STANDBY_MEMORY = 180.0  # seconds a standby keeps the DELETED lines it saw: longer than a peering hand-over

SETTINGS = settings_module.load_or_exit(os.environ)
check_credentials_or_exit(os.environ)
RESTORED = state.load_or_exit(SETTINGS.state_file) if SETTINGS.state_file is not None else None
TRACKER = Tracker(redact=SETTINGS.redact, cluster=SETTINGS.cluster, train_in_background=True)
LEDGER = state.Ledger()  # what was written: the state file's content
SHOWN: set[str] = set()  # the objects this replica printed (or queued) and not yet as DELETED
SAVER = (state.Saver(SETTINGS.state_file, LEDGER, shaping=TRACKER.shaping)
         if SETTINGS.state_file is not None else None)
_background: set[asyncio.Task[None]] = set()


@dataclasses.dataclass
class Run:
    """This process's run: its loop (for callbacks from the writer thread), and how it ends."""
    loop: asyncio.AbstractEventLoop | None = None
    failure: int = 0  # the exit status, once something failed
    why: str | None = None  # what failed, for the liveness probe
    stopping: bool = False

    def fail(self, message: str) -> None:
        """An ERROR, then the normal stop (the clean-up saves what was written); exit status 1."""
        logger.error(message)
        self.failure = FAILURE_EXIT
        self.why = message
        self.stop()

    def stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            os.kill(os.getpid(), signal.SIGTERM)


RUN = Run()

# Kopf retries every failed request (403 Forbidden included) 8 times over ~54 s, then the loop
# that sent it fails and Kopf stops the operator. ~5 minutes rides out API server restarts and
# upgrades; deploywatch's Deployment watch has its own budget (deploywatch.kube.loop.OWN_BACKOFFS).
KOPF_BACKOFFS = (1.0, 2.0, 4.0, 8.0, 15.0, *[30.0] * 9)
LIST_CHUNK = 500  # Deployments per LIST page


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False
    if not settings.peering.mandatory:  # i.e. no --peering NAME on the command line
        settings.peering.standalone = True
    settings.scanning.disabled = not scope.globs_given(settings)
    settings.networking.error_backoffs = KOPF_BACKOFFS
    settings.watching.chunk_size = LIST_CHUNK
    if SETTINGS.label_selector:  # filtered by the API server, in every LIST and WATCH
        settings.watching.label_selectors['apps', 'v1', 'deployments'] = SETTINGS.label_selector
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # neither --verbose nor --debug
        # Kopf logs "Handler succeeded" at INFO for every event: the event is on stdout already.
        logging.getLogger('kopf.objects').setLevel(logging.WARNING)

    for name in settings_module.Settings.unknown_variables(os.environ):
        logger.warning(f"{name} is not a deploywatch setting and is ignored (a typo?).")

    RUN.loop = asyncio.get_running_loop()
    SPOOL.schedule = RUN.loop.call_soon  # lines gathered while the loop works are written when it turns
    watching.install(outlet=watching.Outlet(deliver=deliver, unlisted=TRACKER.unlisted,
                                            replaced=TRACKER.replaced, gate=PAUSE.gate,
                                            forbidden=_forbidden, paused_by=PAUSE.attach),
                     outside=TRACKER.outside)
    if not settings.scanning.disabled:  # a glob: Kopf must list namespaces, or it watches none
        _start(_may_list_namespaces(settings), name='the namespace permission check', supervised=False)
    if SAVER is not None:
        restored = RESTORED or state.Saved({})
        unknown = restored.unknown_under(TRACKER.shaping)  # kept under other settings: see state
        TRACKER.restore(restored.objects, unknown=unknown)
        LEDGER.restore(TRACKER.snapshot(), unknown=unknown)  # what the previous run wrote
        SHOWN.update(TRACKER.uids())
        _start(state.keep_saved(SAVER), name='the state file saver')
    if SETTINGS.resync_seconds > 0:
        _start(resync_forever(tracker=TRACKER, writer=SPOOL, interval=SETTINGS.resync_seconds,
                              gate=PAUSE.may_print),
               name='RESYNC')
    gc.freeze()  # see "Settings that keep it read-only and quiet" above


@kopf.on.cleanup()
async def stop_background(**_: Any) -> None:
    """Stop printing, write what waits (briefly: the reader may be stuck), then the final save."""
    RUN.stopping = True
    saver = {task for task in _background if task.get_name() == 'the state file saver'}
    for task in _background - saver:
        task.cancel()
    await asyncio.gather(*(_background - saver), return_exceptions=True)
    left = await asyncio.to_thread(SPOOL.close, DRAIN_SECONDS)
    if left:
        logger.warning(f"{left} lines were not written before stopping (stdout did not take them "
                       f"within {DRAIN_SECONDS:.0f}s); they are not saved as printed.")
    for task in saver:
        task.cancel()  # its last act is the final save, of what was written
    await asyncio.gather(*saver, return_exceptions=True)
    _background.clear()


@kopf.on.probe(id='deploywatch')
def liveness(**_: Any) -> dict[str, Any]:
    """
    Kopf's ``--liveness`` endpoint answers 500 while this raises: a Deployment watch silent
    for over ``DEPLOYWATCH_STALL_SECONDS``, a failure that is stopping the process, or no
    Deployment watch for over that bound with nothing to start one — no watch of namespaces
    (Kopf has started no watch, has not listed the namespaces of a glob, or gave up watching
    them), or one silent for over the bound (a 403 on watching namespaces, which Kopf retries
    for minutes, then gives up). A glob that matches no namespace yet, while Kopf's watch of
    namespaces is live, is healthy: ``watches`` 0, and ``reason`` says why. Kopf keeps a
    success for 10 s, so a failure shows within the bound plus 10 s.
    """
    m = metrics.METRICS
    unhealthy = m.unhealthy(SETTINGS.stall_seconds)
    if unhealthy:
        raise kopf.PermanentError(unhealthy)
    now = time.monotonic()
    stalest = m.stalest()
    silent = None if stalest is None else round(stalest.silence(now), 1)
    answer: dict[str, Any] = {
        'watches': len(m.watches), 'tracked': len(TRACKER),
        'stalest': None if stalest is None else {'watch': stalest.where, 'silentSeconds': silent}}
    if m.namespaces is not None:
        answer['namespaces'] = {'silentSeconds': round(m.namespaces.silence(now), 1)}
    reason = m.unwatched()
    if reason:
        answer['reason'] = reason
    return answer


@kopf.on.event('apps', 'v1', 'deployments')
async def deployment_event(event: kopf.RawEvent, **_: Any) -> None:
    """
    Declares the resource: Kopf watches what some handler is registered for.

    With ``deploywatch.kube.loop`` installed (always, by ``configure``), the watch
    loop delivers Deployment events to :func:`deliver` itself and none reach this
    handler; without it, they would, and would be handled the same way.
    """
    await deliver(event['type'], event['object'], False)


async def deliver(watch_type: str | None, raw: Mapping[str, Any], inferred: bool) -> None:
    """One event to the tracker and the writer; it waits (the loop turning) while stdout is full."""
    line = TRACKER.observe(watch_type, raw, inferred=inferred)
    if line is None:
        return
    key = identity(raw)
    if PAUSE.leading or (line['type'] == 'DELETED' and key in SHOWN):
        _write(line, key)
        await SPOOL.room()
    else:  # a standby: its memory follows the cluster, and it prints only its own stream's ends
        PAUSE.missed(line, key)


def _write(line: dict[str, Any], key: str) -> None:
    encoded = TRACKER.encoded(key)
    SPOOL.write(line, functools.partial(LEDGER.written, key, encoded), held=len(encoded or b''))
    if line['type'] == 'DELETED':
        SHOWN.discard(key)
    else:
        SHOWN.add(key)


class Pause:
    """
    Kopf's operator pause, seen from here (see "Kopf's operator pause, used twice" above).

    ``toggles`` is Kopf's ``operator_paused`` (Kopf's ``ToggleSet``, read through its public
    ``is_on`` and ``wait_for``); ``gate`` pauses the Deployment watches while stdout is behind:
    peering does not pause them. ``leading`` is whether no toggle of Kopf's is on: whether this
    replica prints. ``deleted`` holds the DELETED lines of a standby, for :data:`STANDBY_MEMORY`
    seconds: the replica that led may have stopped before it saw them.
    """

    def __init__(self) -> None:
        self.toggles: Any = None
        self.gate = watching.Gate()
        self.leading = True
        self.deleted: collections.deque[tuple[float, str, dict[str, Any]]] = collections.deque()

    async def attach(self, toggles: Any) -> None:
        """Kopf's operator pause, handed over by each watch Kopf starts: followed from the first."""
        if self.toggles is not None:
            return
        self.toggles = toggles
        self.leading = not toggles.is_on()  # a standby from its start: its listing is not printed
        _start(self._follow(toggles), name='the pause follower')

    def missed(self, line: dict[str, Any], key: str) -> None:
        """A line a standby does not print: a DELETED is kept a while, for a hand-over."""
        self._forget_old()
        if line['type'] == 'DELETED':
            self.deleted.append((time.monotonic(), key, line))

    def _forget_old(self) -> None:
        while self.deleted and self.deleted[0][0] < time.monotonic() - STANDBY_MEMORY:
            self.deleted.popleft()

    async def _follow(self, toggles: Any) -> None:
        while True:
            await toggles.wait_for(self.leading)  # paused while leading, or not while standing by
            self.leading = not self.leading
            if self.leading:
                logger.info("Not paused any more: printing again, from the current state of every "
                            "Deployment and what was deleted meanwhile.")
                await self._take_over()
            else:
                logger.info(f"Paused by Kopf (peering: another replica leads): the {SPOOL.pending} bytes "
                            "of lines not yet written are still written; nothing more is printed.")

    async def _take_over(self) -> None:
        """
        What a replica that starts to lead prints: the deletions it saw, then every Deployment.
        Written at once, with no turn of the loop in between: no event of a watch can come
        between two of these lines (and print a change before the ADDED it follows).
        """
        self._forget_old()
        deleted, self.deleted = self.deleted, collections.deque()
        for _, key, line in deleted:
            _write(line, key)
        for key in TRACKER.uids():
            announced = TRACKER.announce(key)
            if announced is not None:
                _write(announced, key)
        await SPOOL.room()

    def behind(self, on: bool) -> None:
        if on:
            self.gate.close()
            logger.warning(f"stdout is not keeping up: over {HIGH_WATER // 2**20} MiB of lines wait to "
                           "be written. The Deployment watches pause until half of it is written; the "
                           "changes wait in the API server meanwhile, and nothing is lost.")
        else:
            self.gate.open()
            logger.warning(f"stdout is keeping up again (at most {SPOOL.peak / 2**20:.1f} MiB waited): "
                           "the Deployment watches resume where they paused.")

    async def may_print(self) -> bool:
        """For RESYNC: wait while stdout is behind; whether this replica may print."""
        await self.gate.opened()
        return self.leading and not SPOOL.stopped


def _threadsafe(function: Any) -> Any:
    """A callback from the writer thread, run on the loop."""
    def call(*args: Any) -> None:
        loop = RUN.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(function, *args)
    return call


def _behind(on: bool) -> None:
    PAUSE.behind(on)


def _write_failed(error: OSError) -> None:
    RUN.fail(f"stdout does not take lines any more ({error.strerror or error}): stopping; "
          "what was not written is not saved as printed.")


@atexit.register
def _exit_with_failure() -> None:
    """``kopf run`` ends with 0 after a stop; a stop after a failure must not look like success."""
    if RUN.failure:
        logging.shutdown()
        os._exit(RUN.failure)


def _start(coroutine: Any, *, name: str, supervised: bool = True) -> None:
    task = asyncio.create_task(coroutine, name=name)
    _background.add(task)
    task.add_done_callback(_ended if supervised else _background.discard)


def _ended(task: asyncio.Task[None]) -> None:
    """A background task must run until the clean-up cancels it: anything else is a failure."""
    if task.cancelled():
        return
    error = task.exception()
    if error is None and RUN.stopping:
        return
    how = 'ended' if error is None else f'failed ({type(error).__name__}: {error})'
    RUN.fail(f"{task.get_name()} {how}; stopping.")


def _forbidden(error: watching.MissingPermission) -> None:
    """A missing permission: one line on stderr, the final save, exit 3."""
    print(f"deploywatch: {error}", file=sys.stderr, flush=True)
    if SAVER is not None:
        SAVER.save()
    os._exit(3)


async def _may_list_namespaces(settings: kopf.OperatorSettings) -> None:
    try:
        await watching.may_list_namespaces(settings=settings)
    except watching.MissingPermission as error:
        _forbidden(error)


def _encoder(output_format: str) -> Encoder:
    """How a line is written: JSON, the text format, or a CloudEvent (encoders beside ``output``)."""
    if output_format == 'text':
        return TextEncoder.for_stdout()
    if output_format == 'cloudevents':
        return cloudevents.encode
    return encode_json


SPOOL = Spool(
    LineWriter(stdout(),
               encode=_encoder(SETTINGS.output_format),
               select=Shaper.from_settings(SETTINGS),
               on_reader_gone=RUN.stop),
    on_pressure=_threadsafe(_behind),
    on_failure=_threadsafe(_write_failed),
    on_written=metrics.METRICS.line_written)
PAUSE = Pause()
metrics.METRICS.tracked = TRACKER.__len__
metrics.METRICS.dropped = lambda: SPOOL.dropped
metrics.METRICS.pending = lambda: SPOOL.pending
metrics.METRICS.blocked = lambda: SPOOL.blocked
metrics.METRICS.failure = lambda: RUN.why
if SETTINGS.metrics_port is not None:
    metrics.serve_or_exit(SETTINGS.metrics_port)

