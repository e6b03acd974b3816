"""
The faults a real cluster can play: the network between the operator and the API server.

Every scenario runs against the emulated API server and, with DEPLOYWATCH_E2E_KUBECONFIG,
a real kube-apiserver (``cluster`` is parametrised). The operator connects through
:class:`~tests.harness.proxy.Proxy`, which cuts, refuses or holds its connections; the
test's own client goes direct, so Deployments change while the operator's side is broken.
Nothing here reaches into the server: it is the same server as any other client sees.

A real cluster's deployment controller (and the stand-in kubelet) writes status after
every change, at moments of its own. So no scenario expects "the next MODIFIED": each
compares the whole stream with what the server holds (tests/harness/truth.py) once
things have settled, and counts only what the scenario itself decides (ADDED, DELETED,
``initial``, ``inferred``).

The first tests prove the proxy itself, on plain sockets: a fault test is only as good
as the fault it plays.
"""
import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.operator import eventually
from tests.harness.proxy import Proxy

Obj = dict[str, Any]


# --- The proxy, on plain sockets ------------------------------------------------------


class Echo:
    """A TCP server on 127.0.0.1 that echoes, and records how each connection ended."""

    def __init__(self) -> None:
        self._listener = socket.create_server(('127.0.0.1', 0))
        self.port = self._listener.getsockname()[1]
        self.endings: list[str] = []  # 'eof' or 'reset', per connection
        self._lock = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self._listener.accept()
                threading.Thread(target=self._echo, args=(connection,), daemon=True).start()

    def _echo(self, connection: socket.socket) -> None:
        ending = 'eof'
        with connection:
            try:
                while data := connection.recv(65536):
                    connection.sendall(data)
            except ConnectionResetError:
                ending = 'reset'
        with self._lock:
            self.endings.append(ending)
            self._lock.notify_all()

    def wait_for_endings(self, count: int) -> list[str]:
        with self._lock:
            assert self._lock.wait_for(lambda: len(self.endings) >= count, timeout=5), self.endings
            return list(self.endings)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the blocked accept(): close() alone would not
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.close()


@pytest.fixture
def echo_proxy(echo: Echo) -> Iterator[Proxy]:
    with Proxy(f'http://127.0.0.1:{echo.port}') as proxy:
        yield proxy


def _connect(proxy: Proxy) -> socket.socket:
    client = socket.create_connection(('127.0.0.1', proxy.port), timeout=5)
    client.sendall(b'ping')
    assert client.recv(4) == b'ping'  # connected through to the target
    return client


def _ending(client: socket.socket) -> str:
    try:
        return 'eof' if client.recv(1) == b'' else 'data'
    except ConnectionResetError:
        return 'reset'


def test_the_proxy_forwards_both_ways_and_passes_a_half_close_on(echo: Echo, echo_proxy: Proxy) -> None:
    client = _connect(echo_proxy)
    payload = os.urandom(1024 * 1024)
    sender = threading.Thread(target=client.sendall, args=(payload,))
    sender.start()
    received = bytearray()
    while len(received) < len(payload):
        received += client.recv(65536)
    sender.join()
    assert bytes(received) == payload
    assert echo_proxy.url == f'http://127.0.0.1:{echo_proxy.port}'
    assert echo_proxy.connections == 1 and echo_proxy.open_connections == 1

    client.shutdown(socket.SHUT_WR)  # the target sees the FIN, closes, and the client sees that
    assert echo.wait_for_endings(1) == ['eof']
    assert _ending(client) == 'eof'
    eventually(lambda: echo_proxy.open_connections == 0, what='the closed connection forgotten', timeout=5)


@pytest.mark.parametrize('reset', [True, False], ids=['reset', 'close'])
def test_a_cut_ends_every_connection_at_both_ends(echo: Echo, echo_proxy: Proxy, reset: bool) -> None:
    clients = [_connect(echo_proxy) for _ in range(3)]

    assert echo_proxy.cut(reset=reset) == 3

    expected = 'reset' if reset else 'eof'
    assert [_ending(client) for client in clients] == [expected] * 3
    assert echo.wait_for_endings(3) == [expected] * 3
    assert echo_proxy.open_connections == 0
    _connect(echo_proxy)  # and new connections work at once
    assert echo_proxy.connections == 4


def test_a_reset_from_one_end_reaches_the_other_as_a_reset(echo: Echo, echo_proxy: Proxy) -> None:
    client = _connect(echo_proxy)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
    client.close()
    assert echo.wait_for_endings(1) == ['reset']


def test_refused_connections_until_accepted_again_on_the_same_port(echo: Echo, echo_proxy: Proxy) -> None:
    open_client, port = _connect(echo_proxy), echo_proxy.port

    echo_proxy.refuse()

    assert _ending(open_client) == 'reset'
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', port), timeout=5)
    echo_proxy.accept()
    assert echo_proxy.port == port
    _connect(echo_proxy)


def test_held_bytes_are_delivered_on_release_and_nothing_is_closed(echo: Echo, echo_proxy: Proxy) -> None:
    client = _connect(echo_proxy)

    echo_proxy.hold()
    client.sendall(b'held')
    client.settimeout(0.5)
    with pytest.raises(TimeoutError):
        client.recv(4)
    echo_proxy.release()
    client.settimeout(5)
    assert client.recv(4) == b'held'
    assert echo.endings == []


def test_an_unreachable_target_resets_the_client(echo: Echo, echo_proxy: Proxy) -> None:
    echo.close()  # the target's port now refuses
    client = socket.create_connection(('127.0.0.1', echo_proxy.port), timeout=5)
    assert _ending(client) == 'reset'


def test_a_closed_proxy_refuses_and_its_thread_ends(echo: Echo) -> None:
    proxy = Proxy(f'http://127.0.0.1:{echo.port}')
    client = _connect(proxy)

    proxy.close()

    assert _ending(client) == 'reset'
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(('127.0.0.1', proxy.port), timeout=5)
    proxy.close()  # twice is harmless
