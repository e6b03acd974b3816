"""
The one door to Kopf's private modules: every ``kopf._*`` name deploywatch uses.

Kopf's public API (``kopf.on``, settings, ``kopf.run``) has no way to run a watch
loop of one's own, so ``deploywatch.kube.loop`` builds on a few private pieces.
They are imported here and nowhere else (an import-linter contract in
``pyproject.toml`` forbids ``kopf._`` in any other module), and :func:`check`
names each one, with what it is used for and the Kopf versions this was built
for: a Kopf that moved one fails at start-up in one clear line, not in the
middle of a watch. ``pyproject.toml`` pins the same range.

:func:`install` is the only place that changes Kopf: it replaces
``infinite_watch`` (the loop Kopf runs per resource and namespace, which Kopf's
``queueing.watcher`` looks up at call time), wraps ``adjust_tasks`` (after Kopf
starts or stops the watch of a namespace) and ``api.request`` (every request,
to note the answers), and filters the log of Kopf's watch-streams.
"""
import importlib.metadata
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from kopf._cogs.clients import api as _api
from kopf._cogs.clients import errors as _errors
from kopf._cogs.clients import watching as _watching
from kopf._core.reactor import orchestration as _orchestration

BUILT_FOR = ((1, 45, 2), (1, 46))  # the Kopf versions this was built and tested with: [from, until)
BUILT_FOR_TEXT = 'Kopf >=1.45.2,<1.46'
KOPF_VERSION = importlib.metadata.version('kopf')

# What deploywatch relies on: (module, name, the keyword arguments it passes or receives, why).
RELIED_ON: tuple[tuple[Any, str, frozenset[str], str], ...] = (
    (_watching, 'infinite_watch', frozenset({'settings', 'resource', 'namespace', 'operator_paused'}),
     "replaced: the loop Kopf's watcher runs per resource and namespace"),
    (_watching, 'Bookmark', frozenset(), "Bookmark.LISTED: what Kopf's readiness waits for after a listing"),
    (_watching, 'WatchingError', frozenset(), 'an ERROR event of a watch'),
    (_watching, 'logger', frozenset(), "the log of Kopf's watch-streams, which the outage notice filters"),
    (_api, 'request', frozenset({'settings', 'logger', 'timeout'}),
     'every request, with its login and retries; wrapped to note each answer'),
    (_api, 'iter_jsonlines', frozenset(), 'the lines of a watch response'),
    (_errors, 'APIError', frozenset(), 'a failed request'),
    (_errors, 'APIForbiddenError', frozenset(), 'a 403'),
    (_orchestration, 'adjust_tasks', frozenset({'insights'}),
     'wrapped: after Kopf starts or stops the watch of a namespace'),
)

WatchLoop = Callable[..., AsyncIterator[Any]]


def _keywords(function: Any) -> set[str]:
    try:
        return set(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return set()


def _version(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in text.split('.')[:3])
    except ValueError:  # a development version: nothing to compare
        return None


def check() -> None:
    """Fail in one line if this Kopf lacks a piece deploywatch builds on; warn if outside the range."""
    for module, name, keywords, why in RELIED_ON:
        where = f'{module.__name__}.{name}'
        if not hasattr(module, name):
            raise RuntimeError(f'this Kopf ({KOPF_VERSION}) has no {where} ({why}): '
                               f'deploywatch was built for {BUILT_FOR_TEXT}')
        missing = keywords - _keywords(getattr(module, name))
        if missing:
            raise RuntimeError(f"this Kopf's {where} takes no {', '.join(sorted(missing))} ({why}): "
                               f'deploywatch was built for {BUILT_FOR_TEXT}')
    version = _version(KOPF_VERSION)
    if version is not None and not BUILT_FOR[0] <= version < BUILT_FOR[1]:
        logging.getLogger('deploywatch').warning(
            f'Kopf {KOPF_VERSION} is not one deploywatch was built for ({BUILT_FOR_TEXT}); '
            'the private pieces it uses are still there, so it goes on.')


check()  # at import: before any of the names below is looked up
APIError = _errors.APIError
APIForbiddenError = _errors.APIForbiddenError
WatchingError = _watching.WatchingError
LISTED = _watching.Bookmark.LISTED
watch_logger: logging.Logger = _watching.logger
kopf_infinite_watch = _watching.infinite_watch  # Kopf's own loop: for namespaces, CRDs, peering
_kopf_adjust_tasks = _orchestration.adjust_tasks
_kopf_request = _api.request


def install(*, watch_loop: WatchLoop, after_adjusting: Callable[[Any], Any],
            on_answer: Callable[[], None], log_filter: logging.Filter) -> None:
    """
    Route Kopf's watches through ``watch_loop``; call ``after_adjusting(insights)`` each time
    Kopf has adjusted its per-namespace watches, and ``on_answer()`` after each answered request.
    """
    _watching.infinite_watch = watch_loop  # Kopf's pieces, not an earlier install's, are wrapped

    async def adjust_tasks(*, insights: Any, **kwargs: Any) -> None:
        await _kopf_adjust_tasks(insights=insights, **kwargs)
        await after_adjusting(insights)

    _orchestration.adjust_tasks = adjust_tasks

    async def answered(*args: Any, **kwargs: Any) -> Any:
        response = await _kopf_request(*args, **kwargs)
        on_answer()
        return response

    _api.request = answered
    watch_logger.addFilter(log_filter)


def installed(watch_loop: WatchLoop) -> bool:
    """Whether Kopf's watcher runs ``watch_loop`` now."""
    return _watching.infinite_watch is watch_loop


async def request(method: str, url: str, **kwargs: Any) -> Any:
    """Kopf's request (login, retries, the answer noted), looked up at call time as Kopf does."""
    return await _api.request(method, url, **kwargs)


def iter_jsonlines(content: Any) -> AsyncIterator[bytes]:
    return _api.iter_jsonlines(content)

