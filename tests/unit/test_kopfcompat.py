"""
Kopf's own watcher runs deploywatch's loop once it is installed (``kopfcompat.install``), and
the version check names what is missing. The watcher is Kopf's ``queueing.watcher``, the task
Kopf starts per resource and namespace; the Deployment listing is a stand-in.
"""
import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.clients import fetching
from kopf._cogs.clients import watching as kopf_watching
from kopf._cogs.structs import references as kopf_references
from kopf._core.reactor import observation, orchestration, queueing

from deploywatch.kube import kopfcompat, listwatch
from deploywatch.kube import loop as watching

LISTED = {'metadata': {'uid': 'u-1', 'namespace': 'default', 'name': 'web', 'resourceVersion': '7'}}


@pytest.fixture(autouse=True)
def kopf_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What ``install`` replaces in Kopf, put back after each test."""
    for module, name in [(kopf_watching, 'infinite_watch'), (orchestration, 'adjust_tasks'),
                         (kopf_api, 'request')]:
        monkeypatch.setattr(module, name, getattr(module, name))
    yield
    logging.getLogger(kopf_watching.__name__).removeFilter(watching.NOTICE)


def test_kopfs_watcher_runs_deploywatchs_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    delivered: list[tuple[str | None, Any, bool]] = []
    processed: list[Any] = []
    handed: list[Any] = []

    async def fetch_objs(**_: Any) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        yield [LISTED], '7'

    async def watch_objs(**_: Any) -> AsyncIterator[dict[str, Any]]:
        await asyncio.Event().wait()
        yield {}

    monkeypatch.setattr(listwatch, 'fetch_objs', fetch_objs)
    monkeypatch.setattr(listwatch, 'watch_objs', watch_objs)

    async def scenario() -> None:
        got = asyncio.Event()

        async def deliver(kind: str | None, obj: Any, inferred: bool) -> None:
            delivered.append((kind, obj, inferred))
            got.set()

        async def paused_by(toggles: Any) -> None:
            handed.append(toggles)

        async def processor(*, raw_event: Any, **_: Any) -> None:
            processed.append(raw_event)

        watching.install(outlet=watching.Outlet(deliver=deliver, unlisted=lambda namespace, listed: [],
                                                replaced=lambda obj: [], gate=watching.Gate(),
                                                forbidden=lambda error: None, paused_by=paused_by),
                         outside=lambda inside: [])
        paused = aiotoggles.ToggleSet(any)
        task = asyncio.create_task(queueing.watcher(
            namespace=kopf_references.NamespaceName('default'), settings=kopf.OperatorSettings(),
            resource=kopf.Resource('apps', 'v1', 'deployments'), processor=processor,
            operator_paused=paused))
        try:
            await asyncio.wait_for(got.wait(), timeout=10)  # Kopf's own loop would ask a server
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert handed == [paused]

    asyncio.run(scenario())
    assert delivered == [(None, LISTED, False)]
    assert processed == []  # Kopf's per-object workers saw nothing


def test_the_check_names_the_missing_piece_and_the_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(kopf_watching, 'Bookmark')
    expected = r'kopf\._cogs\.clients\.watching\.Bookmark .*Kopf >=1\.45\.2,<1\.46'
    with pytest.raises(RuntimeError, match=expected):
        kopfcompat.check()


def test_the_check_names_a_keyword_that_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    async def infinite_watch(*, settings: Any, resource: Any, namespace: Any) -> None:
        pass

    monkeypatch.setattr(kopf_watching, 'infinite_watch', infinite_watch)
    with pytest.raises(RuntimeError, match=r'infinite_watch takes no operator_paused'):
        kopfcompat.check()


def test_the_installed_kopf_passes_the_check() -> None:
    kopfcompat.check()


def _namespace(name: str) -> dict[str, Any]:
    return {'metadata': {'name': name, 'uid': f'uid-{name}', 'resourceVersion': '1'}}


def test_kopfs_namespace_observer_acts_on_its_watchs_listings(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Kopf's observer of namespaces lists them, then its watch lists them again, then relists after a
    410: what only a later listing shows (team-late, created between the first two lists; team-b
    gone while the watch was down) changes what is watched. Kopf's own loop is a stand-in here.
    """
    relisted = asyncio.Event()

    async def first_list(**_: Any) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        yield [_namespace('team-a'), _namespace('team-b'), _namespace('other')], '1'

    async def kopfs_loop(**_: Any) -> AsyncIterator[Any]:
        for name in ('team-a', 'team-b', 'team-late', 'other'):
            yield {'type': None, 'object': _namespace(name)}
        yield kopf_watching.Bookmark.LISTED
        await relisted.wait()  # a 410, then Kopf lists again
        for name in ('team-a', 'team-late', 'other'):
            yield {'type': None, 'object': _namespace(name)}
        yield kopf_watching.Bookmark.LISTED
        await asyncio.Event().wait()

    monkeypatch.setattr(fetching, 'fetch_objs', first_list)
    monkeypatch.setattr(kopfcompat, 'kopf_infinite_watch', kopfs_loop)

    async def until(insights: kopf_references.Insights, expected: set[str]) -> None:
        async with insights.revised:
            await asyncio.wait_for(insights.revised.wait_for(lambda: insights.namespaces == expected), 10)

    async def scenario() -> None:
        async def deliver(kind: str | None, obj: Any, inferred: bool) -> None:
            pass

        async def paused_by(toggles: Any) -> None:
            pass

        watching.install(outlet=watching.Outlet(deliver=deliver, unlisted=lambda namespace, listed: [],
                                                replaced=lambda obj: [], gate=watching.Gate(),
                                                forbidden=lambda error: None, paused_by=paused_by),
                         outside=lambda inside: [])
        insights = kopf_references.Insights()
        namespaces = kopf_references.Resource('', 'v1', 'namespaces', namespaced=False)
        await insights.backbone.fill(resources=[namespaces])
        task = asyncio.create_task(observation.namespace_observer(
            clusterwide=False, namespaces=['team-*'],
            insights=insights, settings=kopf.OperatorSettings()))
        try:
            await until(insights, {'team-a', 'team-b', 'team-late'})
            relisted.set()
            await until(insights, {'team-a', 'team-late'})
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
