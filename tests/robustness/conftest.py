"""
Fixtures of the robustness tests that inject faults inside the emulated API server.

Most robustness tests run against the emulator only: their faults (410s, 5xx bursts,
outages, 403s) are injected in the server and their changes made in its store
(``driver``, ``start``). ``test_network.py`` plays the faults a real cluster can play
too, in the network between the operator and the server (tests/harness/proxy.py):
it uses the shared ``cluster`` and ``start_operator`` fixtures of tests/conftest.py
instead, and so runs against a real kube-apiserver as well when
DEPLOYWATCH_E2E_KUBECONFIG is set.
"""
import pathlib
from collections.abc import Callable, Iterator

import pytest

from deploywatch.testing import ServerThread
from tests.conftest import OPERATOR_TOKEN
from tests.harness.driver import Driver
from tests.harness.operator import OperatorProcess

Start = Callable[..., OperatorProcess]


@pytest.fixture
def driver(apiserver: ServerThread) -> Driver:
    return Driver(apiserver)


@pytest.fixture
def start(apiserver: ServerThread, tmp_path: pathlib.Path) -> Iterator[Start]:
    started: list[OperatorProcess] = []

    def start(*args: str, env: dict[str, str] | None = None,
              kubeconfig: pathlib.Path | None = None) -> OperatorProcess:
        if kubeconfig is None:
            kubeconfig = apiserver.kubeconfig(tmp_path / 'operator.kubeconfig', token=OPERATOR_TOKEN)
        process = OperatorProcess(kubeconfig=kubeconfig, args=list(args), env=env,
                                  stderr_path=tmp_path / f'operator-{len(started)}.stderr')
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
