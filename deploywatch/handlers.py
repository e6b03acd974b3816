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
  at start-up instead (``deploywatch.resync``).

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
  requests forever, resuming the watch where it broke (``deploywatch.watching``).
* Listings are paginated (``LIST_CHUNK``): 10,000 Deployments are not one
  60 MB response decoded at once.
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
(``deploywatch.watching``): it knows when a listing is complete (so deletions
missed while disconnected are reported, marked inferred), resumes a broken
watch where it broke, stops on 403, and delivers each event to :func:`deliver`
in stream order, skipping Kopf's per-object queues and workers, which cost
more time and memory than deploywatch's own work (``make bench``).

Everything runs on the event loop: the tracker is only touched from there,
where the RESYNC task also runs, so no lock is needed and no RESYNC can
interleave with a DELETED. (The handler is ``async`` for the same reason:
Kopf would run a sync one in a thread pool.)
"""
import asyncio
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import click
import kopf

from deploywatch import settings as settings_module
from deploywatch import state, watching
from deploywatch.output import LineWriter
from deploywatch.output import encode as encode_json
from deploywatch.preflight import check_credentials_or_exit
from deploywatch.resync import resync_forever
from deploywatch.shaping import Shaper
from deploywatch.text import TextEncoder
from deploywatch.tracker import Tracker

logger = logging.getLogger('deploywatch')

SETTINGS = settings_module.load_or_exit(os.environ)
check_credentials_or_exit(os.environ)
TRACKER = Tracker(redact=SETTINGS.redact)
WRITER = LineWriter(
    encode=(TextEncoder(colour=sys.stdout.isatty() and not os.environ.get('NO_COLOR'))
            if SETTINGS.output_format == 'text' else encode_json),
    select=Shaper.from_settings(SETTINGS))
_background: set[asyncio.Task[None]] = set()

# Kopf retries every failed request (403 Forbidden included) 8 times over ~54 s, then the loop
# that sent it fails and Kopf stops the operator. ~5 minutes rides out API server restarts and
# upgrades; deploywatch's Deployment watch has its own budget (deploywatch.watching.OWN_BACKOFFS).
KOPF_BACKOFFS = (1.0, 2.0, 4.0, 8.0, 15.0, *[30.0] * 9)
LIST_CHUNK = 500  # Deployments per LIST page


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False
    if not settings.peering.mandatory:  # i.e. no --peering NAME on the command line
        settings.peering.standalone = True
    settings.scanning.disabled = not _namespace_globs_given(settings)
    settings.networking.error_backoffs = KOPF_BACKOFFS
    settings.watching.chunk_size = LIST_CHUNK
    if SETTINGS.label_selector:  # filtered by the API server, in every LIST and WATCH
        settings.watching.label_selectors['apps', 'v1', 'deployments'] = SETTINGS.label_selector
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # neither --verbose nor --debug
        # Kopf logs "Handler succeeded" at INFO for every event: the event is on stdout already.
        logging.getLogger('kopf.objects').setLevel(logging.WARNING)

    for name in settings_module.Settings.unknown_variables(os.environ):
        logger.warning(f"{name} is not a deploywatch setting and is ignored (a typo?).")

    watching.install(deliver=deliver, unlisted=TRACKER.unlisted, replaced=TRACKER.replaced,
                     restored_outside=TRACKER.restored_outside, before_exit=_save_state)
    if SETTINGS.state_file is not None:
        TRACKER.restore(state.load(SETTINGS.state_file) or {})
        _start(state.keep_saved(TRACKER, SETTINGS.state_file), name='deploywatch state file')
    if SETTINGS.resync_seconds > 0:
        _start(resync_forever(tracker=TRACKER, writer=WRITER, interval=SETTINGS.resync_seconds),
               name='deploywatch resync')


@kopf.on.cleanup()
async def stop_background(**_: Any) -> None:
    for task in _background:
        task.cancel()
    await asyncio.gather(*_background, return_exceptions=True)
    _background.clear()


@kopf.on.event('apps', 'v1', 'deployments')
async def deployment_event(event: kopf.RawEvent, **_: Any) -> None:
    """
    Declares the resource: Kopf watches what some handler is registered for.

    With ``deploywatch.watching`` installed (always, by ``configure``), the watch
    loop delivers Deployment events to :func:`deliver` itself and none reach this
    handler; without it, they would, and would be handled the same way.
    """
    deliver(event['type'], event['object'], False)


def deliver(watch_type: str | None, raw: Mapping[str, Any], inferred: bool) -> None:
    line = TRACKER.observe(watch_type, raw, inferred=inferred)
    if line is not None:
        WRITER.write(line)


def _start(coroutine: Any, *, name: str) -> None:
    _background.add(asyncio.create_task(coroutine, name=name))


def _save_state() -> None:
    """Before an abrupt exit (a missing permission): keep what was printed so far."""
    if SETTINGS.state_file is not None:
        state.save(SETTINGS.state_file, TRACKER.snapshot())


def _namespace_globs_given(settings: kopf.OperatorSettings) -> bool:
    """
    Whether any ``--namespace`` pattern needs the namespace list to be resolved.

    Kopf does not hand the patterns to handlers, but ``kopf run`` is a Click
    command and start-up handlers run inside it, so its parameters are readable.
    Outside Click (``kopf.run()`` from Python) we cannot know: keep scanning on.
    """
    if settings.peering.clusterwide:
        return False
    context = click.get_current_context(silent=True)
    if context is None or 'namespaces' not in context.params:
        return True
    patterns = [*context.params['namespaces'], os.environ.get('KOPF_RUN_NAMESPACE', '')]
    return any(char in pattern for pattern in patterns for char in '*?[!,')  # fnmatch's [...] too
