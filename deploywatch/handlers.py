"""
The Kopf wiring of deploywatch: which handlers, which settings, and what they call.

``kopf run operator/handlers.py`` (or ``kopf run -m deploywatch.handlers``) imports
this module, which only registers the handlers below. Kopf runs :func:`start` first,
before it logs in: it checks the ``DEPLOYWATCH_*`` values, the credentials and the
state file (one line and exit 2 if one is wrong), builds deploywatch into Kopf's
``memo`` (``deploywatch.runtime.app``) and routes Kopf's Deployment watches through
deploywatch's own list-then-watch loop (``deploywatch.kube.loop``), which delivers
every event itself. Why only ``@kopf.on.event``, why these settings, and how the
pauses work: docs/design.md, "Kopf: which handlers, and why".
"""
import gc
import logging
import os
from typing import Any

import kopf

from deploywatch.kube import scope
from deploywatch.runtime import app

# Kopf retries every failed request (403 Forbidden included) 8 times over ~54 s, then the loop
# that sent it fails and Kopf stops the operator. ~5 minutes rides out API server restarts and
# upgrades; deploywatch's Deployment watch has its own budget (deploywatch.kube.loop.OWN_BACKOFFS).
KOPF_BACKOFFS = (1.0, 2.0, 4.0, 8.0, 15.0, *[30.0] * 9)
# Deployments per LIST page. Each page is a request the API server pays for on top of the objects:
# 20,000 Deployments cost a v1.37 server 0.83 CPU-s in pages of 500, 0.71 in pages of 2,000 and
# 0.68 in one LIST (median of 5, restarted before each). A page is held as bytes and its items
# decoded one at a time (deploywatch.kube.pages): 2,000 cost the client ~25-35 MB more at its
# peak than 500 (the page, and the next one arriving), whatever the cluster's size.
LIST_CHUNK = 2000


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Check, build and start deploywatch; Kopf's settings that keep it read-only and quiet."""
    deploywatch = app.build(os.environ)  # one line and exit 2 on a bad setting: before connecting
    settings.posting.enabled = False
    if not settings.peering.mandatory:  # i.e. no --peering NAME on the command line
        settings.peering.standalone = True
    settings.scanning.disabled = not scope.globs_given(settings)
    settings.networking.error_backoffs = KOPF_BACKOFFS
    settings.watching.chunk_size = LIST_CHUNK
    if deploywatch.settings.label_selector:  # filtered by the API server, in every LIST and WATCH
        settings.watching.label_selectors['apps', 'v1', 'deployments'] = deploywatch.settings.label_selector
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # neither --verbose nor --debug
        # Kopf logs "Handler succeeded" at INFO for every event: the event is on stdout already.
        logging.getLogger('kopf.objects').setLevel(logging.WARNING)
    await deploywatch.start(kopf_settings=settings, globs=not settings.scanning.disabled)
    memo.deploywatch = deploywatch
    gc.freeze()  # what exists now lives as long as the process: out of the collector's walks


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Write what waits (briefly: the reader may be stuck), then the final save."""
    deploywatch: app.Deploywatch | None = memo.get('deploywatch')
    if deploywatch is not None:
        await deploywatch.close()


@kopf.on.probe(id='deploywatch')
def liveness(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
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
    deploywatch: app.Deploywatch = memo.deploywatch
    unhealthy, answer = deploywatch.health()
    if unhealthy:
        raise kopf.PermanentError(unhealthy)
    return answer


@kopf.on.event('apps', 'v1', 'deployments')
async def deployment_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """
    Declares the resource: Kopf watches what some handler is registered for.

    With deploywatch's loop installed (always, by :func:`start`), the loop delivers
    Deployment events itself and none reach this handler; without it, they would,
    and would be handled the same way.
    """
    deploywatch: app.Deploywatch = memo.deploywatch
    await deploywatch.deliver(event['type'], event['object'], False)
