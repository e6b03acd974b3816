"""
The composition root: what a running deploywatch is made of, built when Kopf starts it.

:func:`build` checks everything a user can get wrong before anything connects (the
``DEPLOYWATCH_*`` values, the credentials, the state file, the metrics port), then
builds the tracker, the state file's ledger and saver, the writer and its spool, and
the pause. :meth:`Deploywatch.start` wires them into Kopf (deploywatch's watch loop)
and starts the background tasks; :meth:`Deploywatch.close` is the clean-up. A
background task that ends, or stdout refusing a line, stops the operator through its
:class:`~deploywatch.runtime.lifecycle.Lifecycle`, which owns the exit statuses.

Everything runs on the event loop: the tracker is only touched from there, where the
RESYNC task also runs, so no lock is needed and no RESYNC can interleave with a
DELETED. Only the writing of lines to stdout that would wait happens in a thread
(the spool), so that a slow reader does not stop the loop, which also serves Kopf's
liveness probe and peering keep-alive.
"""
import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from deploywatch.base import metrics
from deploywatch.base.settings import Misconfigured, Settings
from deploywatch.kube import loop, preflight
from deploywatch.model.tracker import Tracker, identity
from deploywatch.output import cloudevents
from deploywatch.output.jsonl import Encoder
from deploywatch.output.jsonl import encode as encode_json
from deploywatch.output.shaping import Shaper
from deploywatch.output.spool import Spool
from deploywatch.output.text import TextEncoder
from deploywatch.output.writer import LineWriter, stdout
from deploywatch.runtime import state
from deploywatch.runtime.lifecycle import Lifecycle, Status
from deploywatch.runtime.pause import Pause
from deploywatch.runtime.resync import resync_forever

logger = logging.getLogger('deploywatch')

DRAIN_SECONDS = 3.0  # at shutdown, how long the lines still waiting may take to be written
SAVER_TASK = 'the state file saver'


def build(environ: Mapping[str, str]) -> 'Deploywatch':
    """deploywatch as the environment configures it; one line and exit 2 if it cannot be."""
    lifecycle = Lifecycle()
    try:
        settings = Settings.from_env(environ)
        preflight.check_credentials(environ)
        restored = state.load_usable(settings.state_file) if settings.state_file is not None else None
        built = Deploywatch(settings=settings, restored=restored, lifecycle=lifecycle)
        if settings.metrics_port is not None:
            metrics.serve(settings.metrics_port)
    except Misconfigured as error:
        lifecycle.stop(Status.MISCONFIGURED, why=str(error))
        raise  # not reached: the lifecycle has exited
    for name in Settings.unknown_variables(environ):
        logger.warning(f"{name} is not a deploywatch setting and is ignored (a typo?).")
    return built


class Deploywatch:
    """
    One running deploywatch. ``shown`` holds the objects this replica printed (or queued) and
    not yet as DELETED: a standby prints only those objects' DELETED (``runtime.pause``).
    """

    def __init__(self, *, settings: Settings, restored: state.Saved | None, lifecycle: Lifecycle) -> None:
        self.settings = settings
        self.lifecycle = lifecycle
        self.restored = restored
        self.tracker = Tracker(redact=settings.redact, cluster=settings.cluster, in_background=True)
        self.ledger = state.Ledger()  # what was written: the state file's content
        self.shown: set[str] = set()
        self.saver = (state.Saver(settings.state_file, self.ledger, shaping=self.tracker.shaping)
                      if settings.state_file is not None else None)
        self.loop: asyncio.AbstractEventLoop | None = None  # for callbacks from the writer thread
        self.background: set[asyncio.Task[None]] = set()
        self.spool = Spool(
            LineWriter(stdout(), encode=_encoder(settings.output_format),
                       select=Shaper.from_settings(settings), on_reader_gone=lifecycle.stop),
            on_pressure=self._threadsafe(self._behind),
            on_failure=self._threadsafe(self._write_failed),
            on_written=metrics.METRICS.line_written)
        self.pause = Pause(spool=self.spool, tracker=self.tracker, write=self.write,
                           start=lambda coroutine, name: self._start(coroutine, name=name))
        m = metrics.METRICS
        m.tracked = self.tracker.__len__
        m.dropped = lambda: self.spool.dropped
        m.pending = lambda: self.spool.pending
        m.blocked = lambda: self.spool.blocked
        m.failure = lambda: self.lifecycle.why

    async def start(self, *, kopf_settings: Any, globs: bool) -> None:
        """Route Kopf's watches through deploywatch's loop; restore the state file; start the tasks."""
        self.loop = asyncio.get_running_loop()
        self.spool.schedule = self.loop.call_soon  # lines gathered meanwhile are written when the loop turns
        loop.install(outlet=loop.Outlet(deliver=self.deliver, unlisted=self.tracker.unlisted,
                                        replaced=self.tracker.replaced, gate=self.pause.gate,
                                        forbidden=self._forbidden, paused_by=self.pause.attach),
                     outside=self.tracker.outside)
        if globs:  # Kopf must list namespaces, or it watches none
            self._start(self._may_list_namespaces(kopf_settings), name='the namespace permission check',
                        supervised=False)
        if self.saver is not None:
            restored = self.restored or state.Saved({})
            unknown = restored.unknown_under(self.tracker.shaping)  # kept under other settings: see state
            self.tracker.restore(restored.objects, unknown=unknown)
            self.ledger.restore(self.tracker.snapshot(), unknown=unknown)  # what the previous run wrote
            self.shown.update(self.tracker.uids())
            self.restored = None
            self._start(state.keep_saved(self.saver), name=SAVER_TASK)
        if self.settings.resync_seconds > 0:
            self._start(resync_forever(tracker=self.tracker, writer=self.spool,
                                       interval=self.settings.resync_seconds, kept_up=self.pause.kept_up,
                                       rounds=metrics.METRICS.resync_rounds),
                        name='RESYNC')

    async def close(self) -> None:
        """Stop printing, write what waits (briefly: the reader may be stuck), then the final save."""
        self.lifecycle.stopping = True
        saver = {task for task in self.background if task.get_name() == SAVER_TASK}
        others = self.background - saver
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        left = await asyncio.to_thread(self.spool.close, DRAIN_SECONDS)
        if left:
            logger.warning(f"{left} lines were not written before stopping (stdout did not take them "
                           f"within {DRAIN_SECONDS:.0f}s); they are not saved as printed.")
        for task in saver:
            task.cancel()  # its last act is the final save, of what was written
        await asyncio.gather(*saver, return_exceptions=True)
        self.background.clear()

    async def deliver(self, watch_type: str | None, raw: Mapping[str, Any], inferred: bool) -> None:
        """One event to the tracker and the writer; it waits (the loop turning) while stdout is full."""
        line = self.tracker.observe(watch_type, raw, inferred=inferred)
        if line is None:
            return
        key = identity(raw)
        if self.pause.leading or (line['type'] == 'DELETED' and key in self.shown):
            self.write(line, key)
            await self.spool.room()
        else:  # a standby: its memory follows the cluster, and it prints only its own stream's ends
            self.pause.missed(line, key)

    def write(self, line: dict[str, Any], key: str) -> None:
        held = self.tracker.held(key)  # its bytes may be packed later, in place: the ledger's too
        self.spool.write(line, functools.partial(self.ledger.written, key, held),
                         held=0 if held is None else len(held.encoded))
        if line['type'] == 'DELETED':
            self.shown.discard(key)
        else:
            self.shown.add(key)

    def health(self) -> tuple[str | None, dict[str, Any]]:
        """For Kopf's liveness probe: what is unhealthy (None: nothing), and what it reports."""
        m = metrics.METRICS
        unhealthy = m.unhealthy(self.settings.stall_seconds)
        now = time.monotonic()
        stalest = m.stalest()
        silent = None if stalest is None else round(stalest.silence(now), 1)
        answer: dict[str, Any] = {
            'watches': len(m.watches), 'tracked': len(self.tracker),
            'stalest': None if stalest is None else {'watch': stalest.where, 'silentSeconds': silent}}
        if m.namespaces is not None:
            answer['namespaces'] = {'silentSeconds': round(m.namespaces.silence(now), 1)}
        reason = m.unwatched()
        if reason:
            answer['reason'] = reason
        return unhealthy, answer

    def _forbidden(self, error: loop.MissingPermission) -> None:
        self.lifecycle.stop(Status.FORBIDDEN, why=str(error))

    async def _may_list_namespaces(self, kopf_settings: Any) -> None:
        try:
            await loop.may_list_namespaces(settings=kopf_settings)
        except loop.MissingPermission as error:
            self._forbidden(error)

    def _start(self, coroutine: Coroutine[Any, Any, None], *, name: str, supervised: bool = True) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self.background.add(task)
        task.add_done_callback(self._ended if supervised else self.background.discard)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A background task must run until the clean-up cancels it: anything else is a failure."""
        if task.cancelled():
            return
        error = task.exception()
        if error is None and self.lifecycle.stopping:
            return
        how = 'ended' if error is None else f'failed ({type(error).__name__}: {error})'
        self.lifecycle.stop(Status.FAILED, why=f"{task.get_name()} {how}; stopping.")

    def _threadsafe(self, function: Callable[..., None]) -> Callable[..., None]:
        """A callback from the writer thread, run on the loop."""
        def call(*args: Any) -> None:
            running = self.loop
            if running is not None and not running.is_closed():
                running.call_soon_threadsafe(function, *args)
        return call

    def _behind(self, on: bool) -> None:
        self.pause.behind(on)

    def _write_failed(self, error: OSError) -> None:
        why = (f"stdout does not take lines any more ({error.strerror or error}): stopping; "
               "what was not written is not saved as printed.")
        self.lifecycle.stop(Status.FAILED, why=why)


def _encoder(output_format: str) -> Encoder:
    """How a line is written: JSON, the text format, or a CloudEvent (encoders beside the writer)."""
    if output_format == 'text':
        return TextEncoder.for_stdout()
    if output_format == 'cloudevents':
        return cloudevents.encode
    return encode_json

