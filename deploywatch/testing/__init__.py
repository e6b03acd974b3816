"""
An emulated kube-apiserver for deploywatch's tests, demo and benchmark.

There is no cluster and no container engine where deploywatch is developed and
tested, so the real operator process is run against this server on 127.0.0.1.
It is kept small, but where it answers, it answers as a real kube-apiserver
does, of the version it is asked to be (``versions``: v1.24, v1.28, v1.34 or,
by default, the newest, v1.37): the recordings of real servers (kept as
fixtures in ``tests/emulator/recordings``) are replayed against it by
``tests/emulator``. What it does not emulate is refused loudly (404, 405,
415), never approximated silently.
"""
from deploywatch.testing.access import Rule, User
from deploywatch.testing.runner import ServerThread
from deploywatch.testing.server import ADMIN_TOKEN, ApiServer
from deploywatch.testing.store import Store

__all__ = ['ADMIN_TOKEN', 'ApiServer', 'Rule', 'ServerThread', 'Store', 'User']
