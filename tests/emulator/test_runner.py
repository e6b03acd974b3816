"""ServerThread's outages: refused while on, listening on the same port after, however they overlap."""
import socket

from deploywatch.testing import ServerThread
from tests.harness.operator import eventually


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(('127.0.0.1', port), timeout=1).close()
    except OSError:
        return False
    return True


def test_an_outage_during_an_outage_extends_it_and_the_port_opens_again() -> None:
    with ServerThread() as thread:
        port = thread.port
        thread.outage(60)
        assert not _accepts(port)
        thread.outage(0.2)  # the soak's race: a second outage before the first one's end ran
        assert not _accepts(port)
        eventually(lambda: _accepts(port), what='the port open again', timeout=30)
        thread.outage(0)  # and again once it is up: down, then up at once
        eventually(lambda: _accepts(port), what='the port open after a zero-length outage', timeout=30)
        assert thread.port == port
        assert thread.server.faults.fired[-3:] == ['outage-60s', 'outage-0.2s', 'outage-0s']
