"""Robustness tests run against the emulated API server only: faults are injected there."""
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
