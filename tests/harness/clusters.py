"""
The clusters a scenario runs against: the emulated API server, or a real one.

Scenarios change Deployments through the official ``kubernetes`` client, so the
same code runs against both. The only difference a scenario sees is who plays
the deployment controller: in a real cluster kube-controller-manager writes the
status after every change by itself; against the emulator the scenario asks
for it with :meth:`Cluster.finish_rollout`, which writes what the controller
would (``deploywatch.testing.controller.rolled_out``) through ``/status``.
"""
import contextlib
import json
import pathlib
import uuid
from typing import Any, cast

import kubernetes

from deploywatch.testing import ServerThread, controller, factory
from deploywatch.testing.store import now
from tests.harness import identity

Obj = dict[str, Any]
# The emulator's operator identities (user, token) per role of Cluster.operator_kubeconfig:
# tests/conftest.py gives them the manifests' rules, as a real cluster's ServiceAccounts have.
EMULATED_OPERATORS = {'plain': ('deploywatch', 'deploywatch-token'),
                      'globs': ('deploywatch-globs', 'globs-operator-token'),
                      'none': ('deploywatch-none', 'none-operator-token'),
                      identity.UNWATCHED_NAMESPACES: ('deploywatch-unwatched', 'unwatched-operator-token')}


class Cluster:
    emulated = False

    def __init__(self, kubeconfig: pathlib.Path) -> None:
        self.kubeconfig = kubeconfig
        client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        self._client = client
        self._apps = kubernetes.client.AppsV1Api(client)
        self._core = kubernetes.client.CoreV1Api(client)
        self._namespaces: list[str] = []

    @staticmethod
    def _raw(response: Any) -> Obj:
        data: Obj = json.loads(response.data)
        return data

    @property
    def minor(self) -> int:
        """The server's Kubernetes minor version (``/version``), e.g. 37."""
        found: Any = kubernetes.client.VersionApi(self._client).get_code()
        return int(''.join(c for c in found.minor if c.isdigit()))

    def new_namespace(self, prefix: str = 'dw') -> str:
        name = f'{prefix}-{uuid.uuid4().hex[:8]}'
        self._core.create_namespace(cast(Any, factory.namespace(name)))
        self._namespaces.append(name)
        return name

    def operator_kubeconfig(self, path: pathlib.Path, *, role: str = 'plain',
                            server: str | None = None) -> pathlib.Path:
        """
        A kubeconfig for the operator: a ServiceAccount bound to the manifests' rules for
        ``role`` (``plain``, ``globs``, ``none``), never the admin; through ``server`` if given.
        """
        account = identity.service_account(self._client, role=role)
        token = identity.token(self._client, account)
        return identity.kubeconfig_for(self.kubeconfig, token, path, server=server)

    def operator_user(self, role: str = 'plain') -> str:
        """The name the API server (and its audit log) knows the operator by."""
        return identity.username(f'deploywatch-{role}')

    def truth(self, namespaces: set[str] | None = None) -> dict[str, Obj]:
        """Every Deployment the server holds now (in ``namespaces``), by uid."""
        listed = self._raw(self._apps.list_deployment_for_all_namespaces(_preload_content=False))
        return {item['metadata']['uid']: item for item in listed['items']
                if namespaces is None or item['metadata']['namespace'] in namespaces}

    def label_namespace(self, name: str, labels: dict[str, str]) -> Obj:
        return self._raw(self._core.patch_namespace(name, {'metadata': {'labels': labels}},
                                                    _preload_content=False))

    def delete_namespace(self, name: str) -> None:
        self._core.delete_namespace(name)

    def namespace_exists(self, name: str) -> bool:
        return any(item.metadata is not None and item.metadata.name == name
                   for item in self._core.list_namespace().items)

    def cleanup(self) -> None:
        for name in self._namespaces:
            with contextlib.suppress(kubernetes.client.ApiException):
                self._core.delete_namespace(name)

    def create(self, body: Obj) -> Obj:
        namespace = body['metadata']['namespace']
        return self._raw(self._apps.create_namespaced_deployment(namespace, cast(Any, body),
                                                                   _preload_content=False))

    def create_big(self, namespace: str, count: int, *, size: int = 200_000) -> None:
        """
        ``big-0`` ... : ``size`` bytes of annotation each (a real server takes 256 KiB in all),
        no pods (a real cluster would run them): lines that fill stdout and its spool fast.
        """
        for index in range(count):
            body = factory.deployment(f'big-{index}', namespace=namespace, replicas=0)
            body['metadata']['annotations'] = {'blob': str(index % 10) * size}
            self.create(body)

    def get(self, namespace: str, name: str) -> Obj:
        return self._raw(self._apps.read_namespaced_deployment(name, namespace, _preload_content=False))

    def patch(self, namespace: str, name: str, patch: Obj) -> Obj:
        """A strategic merge patch, as ``kubectl patch`` and ``kubectl scale`` send."""
        return self._raw(self._apps.patch_namespaced_deployment(name, namespace, patch,
                                                                _preload_content=False))

    def delete(self, namespace: str, name: str, *, propagation: str | None = None) -> None:
        options = kubernetes.client.V1DeleteOptions(propagation_policy=propagation)
        self._apps.delete_namespaced_deployment(name, namespace, body=options)

    def finish_rollout(self, namespace: str, name: str) -> None:
        """Nothing to do: the cluster's own deployment controller writes the status."""


class EmulatedCluster(Cluster):
    emulated = True

    def __init__(self, server: ServerThread, kubeconfig: pathlib.Path) -> None:
        super().__init__(kubeconfig)
        self.server = server

    def operator_kubeconfig(self, path: pathlib.Path, *, role: str = 'plain',
                            server: str | None = None) -> pathlib.Path:
        """The emulator's operator identity: the ServiceAccount of manifests/ (its rules are set up front)."""
        kubeconfig = self.server.kubeconfig(path, token=EMULATED_OPERATORS[role][1])
        if server is not None:
            config = json.loads(kubeconfig.read_text())  # the emulator writes JSON kubeconfigs
            config['clusters'][0]['cluster']['server'] = server
            kubeconfig.write_text(json.dumps(config))
        return kubeconfig

    def operator_user(self, role: str = 'plain') -> str:
        return EMULATED_OPERATORS[role][0]

    def finish_rollout(self, namespace: str, name: str) -> None:
        body = controller.rolled_out(self.get(namespace, name), time=now())
        self._apps.replace_namespaced_deployment_status(name, namespace, cast(Any, body))
