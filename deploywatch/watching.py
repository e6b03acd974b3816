"""
What Kopf's watch stream does not tell handlers, and what it does not do for us.

Kopf lists, then watches, and after ``410 Gone`` lists again, delivering every
listed object to ``@kopf.on.event`` as an event of type None. What it never
reports is an object that was known before and is *absent* from the new list:
it was deleted while the stream was down. client-go calls these
DeletedFinalStateUnknown; Kopf drops them silently (and keeps their memory).

Kopf does know when a listing is complete: its watch stream yields
``Bookmark.LISTED`` after the last listed object, but only to its own queueing
layer. So deploywatch wraps that stream (``kopf._cogs.clients.watching
.infinite_watch``, looked up by Kopf at call time) for Deployments only:

* it collects the uids of each listing, and at ``LISTED`` asks the tracker
  which objects it knows in that namespace but were not listed, and injects a
  DELETED event for each *into the stream*, marked inferred. Injected there, the
  event is queued behind the object's pending events like any other, so an
  inferred DELETED can never overtake a MODIFIED of the same object;
* it makes API errors bounded and explicit: a ``403 Forbidden`` on listing or
  watching is a configuration error, reported in one line before exiting with
  status 3 (Kopf would retry it forever); server errors (5xx), broken streams
  and unexpected watch errors restart the listing with capped backoff instead
  of stopping the operator, and a relist reconciles whatever was missed.

While the API server cannot be reached at all, Kopf retries quietly in its own
loops and logs an ERROR for every attempt. :class:`OutageNotice` turns that into
one warning when the outage starts (Kopf's first line, with the details, is
kept) and one line when the server answers again; the repetitions in between
are dropped unless Kopf runs with ``--verbose``/``--debug``.

This is a private hook; ``check()`` verifies at start-up that the installed Kopf
still has it, and the tests pin the Kopf versions it is known to work with.
"""
import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from kopf._cogs.clients import errors as kopf_errors
from kopf._cogs.clients import watching as kopf_watching

logger = logging.getLogger('deploywatch')

INFERRED = 'deploywatch:inferred'  # marks an injected event; Kopf passes unknown keys through
FORBIDDEN_EXIT = 3
BACKOFF_LIMIT = 30.0

# The objects known in a namespace (None: all) that a complete listing did not contain.
Inferrer = Callable[[str | None, set[str]], list[dict[str, Any]]]
Fatal = Callable[[], None]

_original = kopf_watching.infinite_watch


def check() -> None:
    """Fail loudly if the Kopf installed is not one whose watch stream we know."""
    if not hasattr(kopf_watching, 'Bookmark') or not hasattr(kopf_watching.Bookmark, 'LISTED'):
        raise RuntimeError('this Kopf version has no Bookmark.LISTED: inferred deletions cannot work')


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


def install(*, unlisted: Inferrer, before_exit: Fatal) -> None:
    """Route Kopf's watch streams through :func:`supervise` from now on."""
    check()

    def infinite_watch(**kwargs: Any) -> AsyncIterator[Any]:
        return supervise(unlisted=unlisted, before_exit=before_exit, **kwargs)

    kopf_watching.infinite_watch = infinite_watch
    logging.getLogger(kopf_watching.__name__).addFilter(NOTICE)


def uninstall() -> None:
    kopf_watching.infinite_watch = _original


def _is_deployments(resource: Any) -> bool:
    return bool(resource.group == 'apps' and resource.plural == 'deployments')


async def supervise(*, unlisted: Inferrer, before_exit: Fatal, **kwargs: Any) -> AsyncIterator[Any]:
    resource, namespace = kwargs['resource'], kwargs['namespace']
    if not _is_deployments(resource):
        async for item in _original(**kwargs):
            yield item
        return

    where = f'in namespace {namespace!r}' if namespace else 'cluster-wide'
    backoff = 1.0
    while True:
        listed: set[str] | None = None  # uids of the listing in progress, if any
        try:
            async for item in _original(**kwargs):
                NOTICE.recovered()
                if item is kopf_watching.Bookmark.LISTED:
                    for obj in unlisted(namespace, listed or set()):
                        yield {'type': 'DELETED', 'object': obj, INFERRED: True}
                    listed = None
                    backoff = 1.0
                elif isinstance(item, dict) and item.get('type') is None:
                    listed = set() if listed is None else listed
                    listed.add(str(item['object'].get('metadata', {}).get('uid')))
                yield item
            return  # Kopf ended the stream itself (operator stopping)
        except kopf_errors.APIForbiddenError as error:
            _forbidden(error, where=where, before_exit=before_exit)
        except (kopf_errors.APIError, kopf_watching.WatchingError,
                aiohttp.ClientError, TimeoutError) as error:
            logger.warning(f"Watching deployments {where} failed ({error!r}); "
                           f"listing again in {backoff:.0f}s, then reporting what changed meanwhile.")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_LIMIT)


def _forbidden(error: kopf_errors.APIForbiddenError, *, where: str, before_exit: Fatal) -> None:
    message = error.message or str(error)
    print(f"deploywatch: forbidden to read deployments {where}: {message}. "
          "Grant list and watch on deployments.apps (see manifests/base/rbac.yaml).",
          file=sys.stderr, flush=True)
    before_exit()
    os._exit(FORBIDDEN_EXIT)
