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
"""
import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit


class Proxy:
    def __init__(self, target: str) -> None:
        """``target``: the API server's URL (``https://127.0.0.1:6443``)."""
        parts = urlsplit(target)
        self.scheme = parts.scheme
        self.target = (parts.hostname or '127.0.0.1', parts.port or (443 if parts.scheme == 'https' else 80))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._loop.call_soon_threadsafe(self._flowing.set)
        self.connections = 0
        self.port = 0
        self._call(self._listen())

    @property
    def url(self) -> str:
        return f'{self.scheme}://127.0.0.1:{self.port}'

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(('127.0.0.1', self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._serve, sock=sock)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    def cut(self, *, reset: bool = True) -> None:
        """End every open connection: with a TCP RST (``reset``) or a FIN."""
        async def cut() -> None:
            for writer in list(self._writers):
                sock = writer.get_extra_info('socket')
                if reset and sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
                writer.close()
            self._writers.clear()
        self._call(cut())

    def refuse(self) -> None:
        """Cut everything and stop listening: connections are refused until :meth:`accept`."""
        async def refuse() -> None:
            if self._server is not None:
                self._server.close()
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

    def close(self) -> None:
        self.release()
        self.refuse()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
