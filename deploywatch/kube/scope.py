"""
Which namespaces are watched: the ``--namespace`` patterns, and the end of what left them.

Kopf resolves the patterns itself (globs through a watch of namespaces) and starts or
stops a watch per namespace; deploywatch reads the patterns (to turn that watch of
namespaces off when no glob needs it) and ends the Deployments of a namespace no watch
covers any more (:class:`EndUnwatched`).
"""
import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import click
import kopf

from deploywatch.kube import kopfcompat

logger = logging.getLogger('deploywatch')

# One event for the tracker and the writer: the watch type, the object, inferred (``loop.Deliver``).
Deliver = Callable[[str | None, Mapping[str, Any], bool], Awaitable[None]]
# The known objects whose namespace is outside what is watched (the predicate).
Outside = Callable[[Callable[[str | None], bool]], list[dict[str, Any]]]


def is_deployments(resource: Any) -> bool:
    return bool(resource.group == 'apps' and resource.plural == 'deployments')


def is_namespaces(resource: Any) -> bool:
    return bool(resource.group == '' and resource.plural == 'namespaces')


def namespace_patterns() -> list[str] | None:
    """
    The ``--namespace`` patterns of ``kopf run`` (non-empty ones); None outside Click.

    Kopf hands its patterns to nobody, but ``kopf run`` is a Click command and the
    operator runs inside it, so its parameters are readable.
    """
    context = click.get_current_context(silent=True)
    if context is None or 'namespaces' not in context.params:
        return None
    return [p for p in (*context.params['namespaces'], os.environ.get('KOPF_RUN_NAMESPACE', '')) if p]


def globs_given(settings: kopf.OperatorSettings) -> bool:
    """
    Whether any ``--namespace`` pattern needs the namespace list to be resolved.

    Outside Click (``kopf.run()`` from Python) the patterns cannot be known: then yes,
    and Kopf's scanning of namespaces stays on.
    """
    if settings.peering.clusterwide:
        return False
    patterns = namespace_patterns()
    if patterns is None:
        return True
    return any(char in pattern for pattern in patterns for char in '*?[!,')  # fnmatch's [...] too


async def listings_as_events(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """
    Kopf's watch of namespaces (globs), each listing of it turned into events Kopf's observer acts on.

    Kopf's namespace observer lists the namespaces, then starts this watch, which lists them
    again before it watches; the observer ignores that second listing (events of type None)
    and every later one (after a ``410 Gone``). A namespace created between the two lists was
    never watched: on the real v1.37 server, a test's namespace created 10 ms after the first
    list was in the second one only. So each listed namespace is an ADDED (nothing new for
    one already known), and at the end of a listing each namespace this watch saw before and
    the listing lacks is a DELETED. A listing cut short is followed by a whole one without an
    end in between: what the two give is taken together, so a cut never ends a namespace.
    """
    seen: dict[str, Any] = {}  # the namespaces since the last complete listing: name -> uid
    listed: dict[str, Any] = {}  # the namespaces of the listing under way
    async for item in stream:
        if item is kopfcompat.LISTED:
            for name in sorted(seen.keys() - listed.keys()):  # with its uid: Kopf's worker of that namespace
                uid = {'uid': seen[name]} if seen[name] else {}
                yield {'type': 'DELETED', 'object': {'metadata': {'name': name, **uid}}}
            seen, listed = listed, {}
        elif isinstance(item, dict) and item['type'] is None:
            metadata = item['object']['metadata']
            listed[metadata['name']] = metadata.get('uid')
            yield {**item, 'type': 'ADDED'}
            continue
        elif isinstance(item, dict) and item['type'] in ('ADDED', 'MODIFIED'):
            metadata = item['object']['metadata']
            seen[metadata['name']] = metadata.get('uid')
        elif isinstance(item, dict) and item['type'] == 'DELETED':
            seen.pop(item['object']['metadata']['name'], None)
        yield item


class EndUnwatched:
    """
    Called each time Kopf has adjusted its per-namespace watches: an inferred DELETED for each
    known Deployment of a namespace that no watch covers: Kopf has just stopped its watch, or
    will never start one.

    Kopf starts and stops a watch per namespace as namespaces come, go and match the
    ``--namespace`` patterns (its ``insights.namespaces``; ``None`` in it: cluster-wide, every
    namespace is watched). An object known in any other namespace is one that no listing
    of this run will confirm or deny, and that no DELETED will ever reach:

    * a namespace that left the scope while deploywatch runs. With globs, Kopf drops one as
      soon as it is terminating with status conditions; the namespace controller sets them on
      its first pass and, from v1.33 on (ordered namespace deletion), deletes the Deployments
      only after the pods: their watch is gone before their DELETED is sent (seen on v1.34 and
      v1.37), and a watch that was paused or backing off (stdout behind) never had it;
    * restored from a state file: of namespaces outside today's patterns (the file was written
      by a run with ``--all-namespaces``), or of a namespace deleted while deploywatch was down
      (it still matches the glob, but Kopf starts no watch for a namespace that does not exist).

    Leaving the scope ends an object as leaving a label selector does (``kubectl get -w -l``):
    with DELETED, then nothing more. With globs, the namespaces are judged only once Kopf has
    listed them all (``insights.ready_namespaces``): before, a namespace not yet seen is no
    evidence. At shutdown Kopf cancels its tasks without calling this, so nothing is ended then.
    """

    def __init__(self, *, deliver: Deliver, outside: Outside) -> None:
        self.deliver = deliver
        self.outside = outside
        self.later: set[asyncio.Task[None]] = set()

    async def __call__(self, insights: Any) -> None:
        if None in insights.namespaces:
            return
        if insights.ready_namespaces.is_set():
            await self.end(insights)
        elif not self.later:  # the namespaces are being listed: judge them once they all are
            task = asyncio.create_task(self.end(insights), name='ending the Deployments no watch covers')
            self.later.add(task)
            task.add_done_callback(self.later.discard)

    async def end(self, insights: Any) -> None:
        await insights.ready_namespaces.wait()
        watched = set(insights.namespaces)
        gone = self.outside(lambda namespace: namespace in watched)
        if gone:
            names = ', '.join(sorted({str(obj.get('metadata', {}).get('namespace')) for obj in gone}))
            logger.warning(f"{len(gone)} Deployment(s) of namespaces no watch covers ({names}: deleted, or "
                           "not matching --namespace) end with an inferred DELETED and are forgotten.")
        for obj in gone:
            await self.deliver('DELETED', obj, True)
