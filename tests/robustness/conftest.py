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
import contextlib
import pathlib
from collections.abc import Callable, Iterator
from typing import Any, cast

import kubernetes
import pytest
import yaml

from deploywatch.testing import ServerThread
from deploywatch.testing.access import Request
from tests.conftest import MANIFESTS, OPERATOR_TOKEN
from tests.harness.clusters import Cluster
from tests.harness.driver import Driver
from tests.harness.operator import OperatorProcess, eventually
from tests.harness.realk8s import ControlPlane
from tests.harness.truth import all_to_the_end

Start = Callable[..., OperatorProcess]
OVERLAY = MANIFESTS / 'overlays' / 'ha'
PEERING = 'deploywatch'
GROUP, VERSION, PLURAL = 'kopf.dev', 'v1', 'clusterkopfpeerings'
CRD = f'{PLURAL}.{GROUP}'
Peers = Callable[[], dict[str, Any]]


def is_listing(request: Request) -> bool:
    """A request that lists Deployments: a LIST's page."""
    return request.resource == 'deployments' and request.verb == 'list'


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
    assert all_to_the_end(started) == []  # a stream that once matched the server still must, to its end


def _documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((OVERLAY / name).read_text()) if doc]


@pytest.fixture
def peering_object(cluster: Cluster, control_plane: ControlPlane) -> Iterator[Peers]:
    """
    As the admin: the overlay's ClusterKopfPeering CRD and its object ``deploywatch``;
    what this fixture created is deleted afterwards, nothing else. Yields how to read
    the peers the object holds (Kopf's keep-alives, by identity).
    """
    client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    extensions = kubernetes.client.ApiextensionsV1Api(client)
    custom = kubernetes.client.CustomObjectsApi(client)
    created_crd = created_object = False

    def established() -> bool:
        """Ours, or one there already; never one still being deleted (the last test's)."""
        nonlocal created_crd
        try:
            extensions.create_custom_resource_definition(cast(Any, _documents('peering-crd.yaml')[0]))
            created_crd = True
        except kubernetes.client.ApiException as error:
            if error.status != 409:
                raise
        return _established(extensions)

    try:
        eventually(established, what=f'the CRD {CRD} established', timeout=60)
        try:
            custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, PEERING)
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise
        else:
            pytest.skip(f'a ClusterKopfPeering {PEERING!r} exists already (not this test\'s): '
                        'its peers would decide who leads')
        body = next(doc for doc in _documents('peering.yaml') if doc['kind'] == 'ClusterKopfPeering')
        eventually(lambda: _created(custom, body), what=f'the ClusterKopfPeering {PEERING!r} created',
                   timeout=30)  # a new CRD's resource is served moments after it is established
        created_object = True
        yield lambda: dict(cast(dict[str, Any], custom.get_cluster_custom_object(
            GROUP, VERSION, PLURAL, PEERING)).get('status') or {})
    finally:
        if created_object:
            with contextlib.suppress(kubernetes.client.ApiException):
                custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, PEERING)
        if created_crd:
            with contextlib.suppress(kubernetes.client.ApiException):
                extensions.delete_custom_resource_definition(CRD)
            eventually(lambda: _read(extensions) is None, what=f'the CRD {CRD} deleted', timeout=60)


def _read(extensions: Any) -> Any:
    """The CRD, or None when there is none."""
    try:
        return extensions.read_custom_resource_definition(CRD)
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return None
        raise


def _established(extensions: Any) -> bool:
    crd = _read(extensions)
    if crd is None or crd.metadata.deletion_timestamp is not None:  # gone, or going: create it again
        return False
    return any(c.type == 'Established' and c.status == 'True' for c in crd.status.conditions or [])


def _created(custom: Any, body: dict[str, Any]) -> bool:
    try:
        custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True
