"""
The emulated API server with deploywatch's ServiceAccount holding a shape's RBAC.

The token stands for the ServiceAccount's: a request with it is allowed exactly what
the shape's Roles and ClusterRoles bound to the ServiceAccount allow (tests/deploy/rbac.py
turns them into the emulator's rules), and the request log records it as 'deploywatch'.
"""
import contextlib
import pathlib
from collections.abc import Iterator

from deploywatch.testing import ApiServer, ServerThread, User
from tests.deploy.rbac import Access, emulator_rules

TOKEN = 'deploywatch-serviceaccount-token'
USER = 'deploywatch'


@contextlib.contextmanager
def serving(grants: set[Access]) -> Iterator[ServerThread]:
    """A server whose request log shows what the shape's grants allowed and refused."""
    server = ApiServer(bookmark_interval=1.0)
    server.add_user(User(USER, TOKEN, emulator_rules(grants)))
    with ServerThread(server) as thread:
        yield thread


def kubeconfig(thread: ServerThread, path: pathlib.Path) -> pathlib.Path:
    """The ServiceAccount's kubeconfig, readable by the image's non-root user too."""
    thread.kubeconfig(path, token=TOKEN)
    path.chmod(0o644)
    return path
