"""
A TCP proxy between the operator and an API server, real or emulated, that breaks on demand.

A real kube-apiserver cannot be told to misbehave, but the network between it and
the operator can: this proxy forwards bytes (TLS passes through untouched, so the
server's certificate and the operator's token work as they would directly) and can

* cut every open connection, with a TCP reset or a clean close (a load balancer or
  a NAT table dropping the watch),
* refuse new connections for a while (the API server's address unreachable),
* hold the bytes without closing anything (a network partition that nobody notices).

The test's own client talks to the server directly, so Deployments change while the
operator's side of the network is broken: the real counterpart of the emulator's
fault injection.

The proxy runs its own event loop in a thread; every method is called from the
test's thread and returns once the fault is in place (a cut connection is closed,
a refused port no longer listens). Both ends of a connection are cut together, so
the server sees the watch end as the operator does. A reset arriving from one end
is passed on as a reset to the other, a clean close (FIN) as a clean close, so the
proxy itself never turns one kind of breakage into another.
"""
import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

CALL_TIMEOUT = 10.0  # seconds for the proxy's loop to carry out one request of the test's thread
CHUNK = 65536


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST: SO_LINGER 0, then close without flushing what is buffered."""
    sock = writer.get_extra_info('socket')
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    writer.transport.abort()


class Proxy:
    def __init__(self, target: str) -> None:
        """``target``: the API server's URL (``https://127.0.0.1:6443``); listens on a free port."""
        parts = urlsplit(target)
        self.scheme = parts.scheme
        self.target = (parts.hostname or '127.0.0.1', parts.port or (443 if parts.scheme == 'https' else 80))
        self.connections = 0  # accepted so far: a reconnect shows as this growing
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name='proxy', daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._open: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = self._call(self._event())
        self._call(self._listen())

    @property
    def url(self) -> str:
        return f'{self.scheme}://127.0.0.1:{self.port}'

    @property
    def open_connections(self) -> int:
        """Connections forwarded right now (both ends up)."""
        return sum(1 for _, upstream in list(self._open) if upstream is not None)

    def __enter__(self) -> 'Proxy':
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=CALL_TIMEOUT)

    @staticmethod
    async def _event() -> asyncio.Event:
        flowing = asyncio.Event()
        flowing.set()
        return flowing

    async def _listen(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(('127.0.0.1', self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._accepted, sock=sock)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        entry: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (writer, None)
        self._open.append(entry)  # a cut while connecting upstream closes this one too
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:  # the target is down: the client sees its connection reset
                _abort(writer)
                return
            if writer.is_closing():  # cut meanwhile
                _abort(up_writer)
                return
            self._open.remove(entry)
            entry = (writer, up_writer)
            self._open.append(entry)
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            with contextlib.suppress(ValueError):
                self._open.remove(entry)
            for end in entry:
                if end is not None:
                    end.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One direction: bytes as they come, then the way the source ended (FIN or RST)."""
        try:
            while data := await reader.read(CHUNK):
                await self._flowing.wait()
                if writer.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        except ConnectionResetError:
            _abort(writer)
            return
        except OSError:
            writer.close()
            return
        with contextlib.suppress(OSError):
            if not writer.is_closing():
                writer.write_eof()

    def cut(self, *, reset: bool = True) -> int:
        """End every open connection, at both ends: with a TCP RST (``reset``) or a FIN. How many."""
        async def cut() -> int:
            entries, self._open[:] = list(self._open), []
            for entry in entries:
                for end in entry:
                    if end is None:
                        continue
                    if reset:
                        _abort(end)
                    else:
                        end.close()
            return len(entries)
        count: int = self._call(cut())
        return count

    def refuse(self) -> None:
        """Stop listening, then cut (reset) what is open: refused until :meth:`accept`."""
        async def refuse() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
        self._call(refuse())
        self.cut()

    def accept(self) -> None:
        """Listen again, on the same port."""
        if self._server is None:
            self._call(self._listen())

    def hold(self) -> None:
        """Stop forwarding bytes, closing nothing: a silent partition."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def wait_for_connections(self, count: int, *, timeout: float = 30.0) -> None:
        """Until ``count`` connections were accepted in all (a client reconnected); fail after the bound."""
        deadline = time.monotonic() + timeout
        while self.connections < count:
            if time.monotonic() > deadline:
                raise AssertionError(f'{self.connections} of {count} connections through the proxy')
            time.sleep(0.02)

    def close(self) -> None:
        """Refuse and cut everything, end the loop's tasks and the thread."""
        if not self._thread.is_alive():
            return
        self.release()
        self.refuse()

        async def finish() -> None:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._call(finish())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=CALL_TIMEOUT)
        self._loop.close()
