"""
Changes made directly in the emulated server's store, and the truth it holds.

Robustness tests change Deployments while the API is down or misbehaving, so
they cannot go through HTTP: they call the store on the server's loop instead,
as other API clients would have done through a healthy server.
"""
import copy
import itertools
from typing import Any

from deploywatch.testing import ServerThread, controller, factory, kinds
from deploywatch.testing.store import now

DEPLOYMENTS = kinds.DEPLOYMENTS
STRATEGIC = 'application/strategic-merge-patch+json'


class Driver:
    def __init__(self, server: ServerThread) -> None:
        self.server = server
        self.store = server.server.store
        self.faults = server.server.faults
        self._images = itertools.cycle(['nginx:1.25', 'nginx:1.27', 'nginx:1.29'])

    def namespace(self, name: str) -> str:
        self.server.call(self.store.create, kinds.NAMESPACES, '', factory.namespace(name), manager='test')
        return name

    def create(self, namespace: str, name: str, **kwargs: Any) -> dict[str, Any]:
        return self.server.call(self.store.create, DEPLOYMENTS, namespace,
                                factory.deployment(name, namespace=namespace, **kwargs), manager='test')

    def scale(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        return self.patch(namespace, name, {'spec': {'replicas': replicas}})

    def new_image(self, namespace: str, name: str) -> dict[str, Any]:
        return self.patch(namespace, name, {'spec': {'template': {'spec': {'containers': [
            {'name': 'app', 'image': next(self._images)}]}}}})

    def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.server.call(self.store.patch, DEPLOYMENTS, namespace, name, patch, STRATEGIC,
                                manager='test')

    def roll_out(self, namespace: str, name: str) -> dict[str, Any]:
        def write() -> dict[str, Any]:
            current = self.store.get(DEPLOYMENTS, namespace, name)
            return self.store.update(DEPLOYMENTS, namespace, name, controller.rolled_out(current, time=now()),
                                     manager='kube-controller-manager', subresource='status')
        return self.server.call(write)

    def delete(self, namespace: str, name: str, *, propagation: str | None = None) -> None:
        options = {'propagationPolicy': propagation} if propagation else {}
        self.server.call(self.store.delete, DEPLOYMENTS, namespace, name, options)

    def inject(self, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self.server.call(self.store.inject, DEPLOYMENTS, namespace, obj)

    def truth_uid(self, namespace: str, name: str) -> str:
        uid: str = self.server.call(self.store.get, DEPLOYMENTS, namespace, name)['metadata']['uid']
        return uid

    def compact(self) -> None:
        """Forget the history: the next watch from an older version gets 410 Gone."""
        self.server.call(self.store.compact)

    def truth(self) -> dict[str, dict[str, Any]]:
        def read() -> dict[str, dict[str, Any]]:
            return {obj["metadata"]["uid"]: copy.deepcopy(obj) for obj in self.store.current(DEPLOYMENTS)}
        return self.server.call(read)
