"""
Fixtures shared by every test folder.

``cluster`` is parametrised: ``emulated`` always runs, against the API server
of ``deploywatch.testing`` on 127.0.0.1; ``real`` runs the same scenario
against the cluster of ``DEPLOYWATCH_E2E_KUBECONFIG`` and is skipped, with that
reason printed in the summary (``-ra``), when the variable is not set.
"""
import os
import pathlib
from collections.abc import Callable, Iterator

import pytest

from deploywatch.testing import ApiServer, ServerThread, User
from tests.harness.clusters import Cluster, EmulatedCluster
from tests.harness.operator import OperatorProcess
from tests.harness.rbac import rules_from_manifest
from tests.harness.reporting import SOAK_FIGURES

E2E_KUBECONFIG = 'DEPLOYWATCH_E2E_KUBECONFIG'
OPERATOR_TOKEN = 'deploywatch-token'
RBAC_MANIFEST = pathlib.Path(__file__).resolve().parents[1] / 'manifests' / 'base' / 'rbac.yaml'


@pytest.fixture
def apiserver() -> Iterator[ServerThread]:
    server = ApiServer(bookmark_interval=1.0)
    server.add_user(User('deploywatch', OPERATOR_TOKEN, rules_from_manifest(RBAC_MANIFEST)))
    with ServerThread(server) as thread:
        yield thread


@pytest.fixture(params=['emulated', 'real'])
def cluster(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Cluster]:
    if request.param == 'real':
        kubeconfig = os.environ.get(E2E_KUBECONFIG)
        if not kubeconfig:
            pytest.skip(f'no real cluster: set {E2E_KUBECONFIG} to a kubeconfig to run this scenario there')
        real = Cluster(pathlib.Path(kubeconfig))
        yield real
        real.cleanup()
        return
    server = request.getfixturevalue('apiserver')
    yield EmulatedCluster(server, server.kubeconfig(tmp_path / 'admin.kubeconfig'))


@pytest.fixture
def operator_kubeconfig(cluster: Cluster, tmp_path: pathlib.Path) -> pathlib.Path:
    """Against the emulator: the read-only ServiceAccount of manifests/. Real: the given one."""
    if isinstance(cluster, EmulatedCluster):
        return cluster.server.kubeconfig(tmp_path / 'operator.kubeconfig', token=OPERATOR_TOKEN)
    return cluster.kubeconfig


StartOperator = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(operator_kubeconfig: pathlib.Path, tmp_path: pathlib.Path) -> Iterator[StartOperator]:
    started: list[OperatorProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, text: bool = False,
              tty: bool = False) -> OperatorProcess:
        process = OperatorProcess(kubeconfig=operator_kubeconfig, args=list(args), env=env,
                                  stderr_path=tmp_path / f'operator-{len(started)}.stderr',
                                  text=text, tty=tty)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The soak's figures, in the summary where CI logs and closing notes can quote them."""
    for figures in config.stash.get(SOAK_FIGURES, []):
        terminalreporter.write_line('soak: ' + ', '.join(f'{key} {value}' for key, value in figures.items()))
