"""
Running the emulated API server beside a test, a demo or a benchmark.

:class:`ServerThread` serves an :class:`ApiServer` on 127.0.0.1 from a thread of
its own, with its own event loop, so that the code driving it (pytest, the demo
script) stays plain synchronous Python while the operator under test is a
separate process talking HTTP to it. Everything that touches the store from
outside goes through :meth:`ServerThread.call`, which runs it on the server's
loop: the store is never touched from two threads.

It also runs the emulated garbage collector (``controller.GarbageCollector``),
which finishes foreground deletions on its own, a moment later, as the real one
does. A test that plays the garbage collector itself, to control exactly when
the ``foregroundDeletion`` finalizer goes, passes ``garbage_collector=False``.
"""
import asyncio
import concurrent.futures
import json
import pathlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from deploywatch.testing import factory, kinds
from deploywatch.testing.controller import GarbageCollector
from deploywatch.testing.server import ADMIN_TOKEN, ApiServer

T = TypeVar('T')


class ServerThread:
    def __init__(self, server: ApiServer | None = None, *, host: str = '127.0.0.1', port: int = 0,
                 garbage_collector: bool = True) -> None:
        self.server = server if server is not None else ApiServer()
        self._garbage_collector = garbage_collector
        self._host = host
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name='apiserver', daemon=True)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._back: asyncio.TimerHandle | None = None  # an outage's end, while one is on
        self._listening: asyncio.Task[None] | None = None  # listening again after an outage
        self._collector: GarbageCollector | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f'http://{self._host}:{self.port}'

    def __enter__(self) -> 'ServerThread':
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)

    async def _start(self) -> None:
        if self._garbage_collector:
            self._collector = GarbageCollector(self.server.store)
        for name in ('default', 'kube-system', 'kube-public'):
            self.server.store.create(kinds.NAMESPACES, '', factory.namespace(name), manager='kube-apiserver')
        self._runner = web.AppRunner(self.server.app(), handle_signals=False, access_log=None,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        await self._listen(self._port)
        self.port = self._runner.addresses[0][1]

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self._host, port)
        await self._site.start()

    def outage(self, seconds: float) -> None:
        """
        Refuse connections for a while, as a restarting or unreachable API server does.

        Returns once the port is closed and every open connection (watches included)
        is dropped; the server listens again on the same port after ``seconds``.
        The store is kept: what happens meanwhile through :meth:`call` is there after.
        An outage called while one is on (or while the port opens again) extends it to
        ``seconds`` from now: the caller's clock and the server's loop need not agree.
        """
        asyncio.run_coroutine_threadsafe(self._down(seconds), self._loop).result(timeout=30)

    async def _down(self, seconds: float) -> None:
        assert self._runner is not None and self._runner.server is not None and self._site is not None
        if self._back is not None:  # down already: only the end moves
            self._back.cancel()
        else:
            if self._listening is not None:
                await self._listening
            await self._site.stop()
            for connection in list(self._runner.server.connections):
                if connection.transport is not None:
                    connection.transport.abort()
        self.server.faults.fired.append(f'outage-{seconds}s')
        self._back = self._loop.call_later(seconds, self._up)

    def _up(self) -> None:
        self._back = None
        self._listening = self._loop.create_task(self._listen(self.port))

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the server's loop (where the store lives) and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:
                future.set_exception(error)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    def kubeconfig(self, path: pathlib.Path, *, token: str = ADMIN_TOKEN) -> pathlib.Path:
        """A kubeconfig for this server and one user's token (JSON is valid YAML)."""
        config = {
            'apiVersion': 'v1', 'kind': 'Config',
            'clusters': [{'name': 'emulated', 'cluster': {'server': self.url}}],
            'users': [{'name': 'user', 'user': {'token': token}}],
            'contexts': [{'name': 'emulated',
                          'context': {'cluster': 'emulated', 'user': 'user', 'namespace': 'default'}}],
            'current-context': 'emulated',
        }
        path.write_text(json.dumps(config, indent=2))
        return path
