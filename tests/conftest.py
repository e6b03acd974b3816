"""
Fixtures shared by every test folder.

``cluster`` is parametrised: ``emulated`` always runs, against the API server
of ``deploywatch.testing`` on 127.0.0.1; ``real`` runs the same scenario
against the cluster of ``DEPLOYWATCH_E2E_KUBECONFIG`` and is skipped, with that
reason printed in the summary (``-ra``), when the variable is not set.
Every ``real`` variant is marked ``e2e``, so ``make e2e`` (``pytest -m e2e``) runs
exactly the items that meet a real cluster.
"""
import dataclasses
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from deploywatch.testing import ApiServer, ServerThread, User
from tests.deploy import conftest as deploy_conftest
from tests.harness import identity
from tests.harness.clusters import EMULATED_OPERATORS, Cluster, EmulatedCluster
from tests.harness.operator import OperatorProcess
from tests.harness.rbac import rules_from_manifest
from tests.harness.realk8s import ControlPlane
from tests.harness.reporting import FIGURES, SOAK_FIGURES, Carried, receive, send
from tests.harness.truth import all_to_the_end

E2E_KUBECONFIG = 'DEPLOYWATCH_E2E_KUBECONFIG'
OPERATOR_TOKEN = EMULATED_OPERATORS['plain'][1]
MANIFESTS = pathlib.Path(__file__).resolve().parents[1] / 'manifests'
RBAC_MANIFEST = MANIFESTS / 'base' / 'rbac.yaml'
GLOB_RBAC_MANIFEST = MANIFESTS / 'components' / 'namespace-globs' / 'rbac.yaml'


@pytest.fixture
def apiserver(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    """The emulated API server; ``ApiServer``'s options by indirect parametrization (``watch_list``)."""
    server = ApiServer(bookmark_interval=1.0, **getattr(request, 'param', {}))
    # The identities Cluster.operator_kubeconfig hands out, as a real cluster's ServiceAccounts.
    plain = rules_from_manifest(RBAC_MANIFEST)
    globs = plain + rules_from_manifest(GLOB_RBAC_MANIFEST)
    unwatched = tuple(dataclasses.replace(rule, verbs=frozenset(
        identity.without_namespace_watch(sorted(rule.verbs), sorted(rule.resources)))) for rule in globs)
    roles = {'plain': plain, 'globs': globs, 'none': (), identity.UNWATCHED_NAMESPACES: unwatched}
    for role, rules in roles.items():
        user, token = EMULATED_OPERATORS[role]
        server.add_user(User(user, token, rules))
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every item that meets a real cluster is ``e2e`` (``make e2e`` selects them): the ``real`` variants."""
    for item in items:
        callspec = getattr(item, 'callspec', None)
        if callspec is not None and callspec.params.get('cluster') == 'real':
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def operator_kubeconfig(cluster: Cluster, tmp_path: pathlib.Path) -> pathlib.Path:
    """The read-only ServiceAccount of manifests/, on either cluster: never the admin."""
    return cluster.operator_kubeconfig(tmp_path / 'operator.kubeconfig')


@pytest.fixture
def control_plane(cluster: Cluster) -> ControlPlane:
    """The loopback control plane's processes and audit log (real runs on tests/cluster only)."""
    found = ControlPlane.from_environment()
    if cluster.emulated or found is None:
        pytest.skip('needs the loopback control plane of tests/cluster (REALK8S_DIR): make e2e-local or CI')
    return found


StartOperator = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(operator_kubeconfig: pathlib.Path, tmp_path: pathlib.Path) -> Iterator[StartOperator]:
    started: list[OperatorProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, text: bool = False,
              tty: bool = False, kubeconfig: pathlib.Path | None = None) -> OperatorProcess:
        process = OperatorProcess(kubeconfig=kubeconfig or operator_kubeconfig, args=list(args), env=env,
                                  stderr_path=tmp_path / f'operator-{len(started)}.stderr',
                                  text=text, tty=tty)
        started.append(process)
        return process

    yield start
    assert all_to_the_end(started) == []  # a stream that once matched the server still must, to its end


# Every stash list a summary hook prints, by a name unique among them: carried from the xdist
# workers to the controller (tests/harness/reporting.py), where the summary is written.
CARRIED_FIGURES: Carried = {'soak': SOAK_FIGURES, 'figures': FIGURES, 'deploy': deploy_conftest.FIGURES}


def pytest_sessionfinish(session: pytest.Session) -> None:
    send(session.config, CARRIED_FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist's hook, on the controller, as each worker ends (absent without xdist: optional)."""
    receive(node.config, getattr(node, 'workeroutput', {}), CARRIED_FIGURES)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The soak's figures, in the summary where CI logs and closing notes can quote them."""
    if not config.pluginmanager.is_registered(deploy_conftest):
        # An xdist controller collects nothing, so never loads tests/deploy/conftest.py: its
        # figures (carried here from the workers) are printed by its hook, called from here.
        deploy_conftest.pytest_terminal_summary(terminalreporter, config)
    for figures in config.stash.get(SOAK_FIGURES, []):
        terminalreporter.write_line('soak: ' + ', '.join(f'{key} {value}' for key, value in figures.items()))
    for line in config.stash.get(FIGURES, []):
        terminalreporter.write_line(line)
