"""
Deployment objects for the unit tests, built in one place.

Each field is a parameter, and ``None`` leaves it out, so a test names only what it
differs in and a module's own defaults are one ``functools.partial`` away. What
is built is exactly what the tests used to write by hand: a Deployment as the API
server sends it, or (``typed=False``) the bare metadata and spec that the tracker,
the ids and the rollout rules read. Every call returns fresh dicts: tests mutate them.

The scenarios that send objects to an API server use ``deploywatch.testing.factory``
instead: manifests shaped like what ``kubectl create deployment`` sends.
"""
import copy
from collections.abc import Mapping, Sequence
from typing import Any


def deployment(name: str = 'web', *, namespace: str | None = 'default', uid: str | None = 'u-1',
               rv: str | None = '1', generation: int | None = None,
               managed_fields: Sequence[Mapping[str, Any]] | None = None, replicas: int | None = 1,
               paused: bool | None = None, pod: Mapping[str, Any] | None = None,
               status: Mapping[str, Any] | None = None, typed: bool = True) -> dict[str, Any]:
    """
    ``pod``: the template's pod spec (None: no template); ``status``: the status fields
    (None: no status); ``typed``: with ``apiVersion`` and ``kind``.
    """
    given = {'name': name, 'namespace': namespace, 'uid': uid, 'resourceVersion': rv,
             'generation': generation, 'managedFields': managed_fields}
    spec = {'replicas': replicas, 'paused': paused, 'template': None if pod is None else {'spec': pod}}
    obj: dict[str, Any] = {'apiVersion': 'apps/v1', 'kind': 'Deployment'} if typed else {}
    obj |= {'metadata': _present(given), 'spec': _present(spec)}
    if status is not None:
        obj['status'] = status
    return copy.deepcopy(obj)


def pod(*, container: str = 'app', image: str = 'nginx',
        env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A pod spec of one container; ``env``: its plain variables, by name."""
    spec: dict[str, Any] = {'name': container, 'image': image}
    if env is not None:
        spec['env'] = [{'name': key, 'value': value} for key, value in env.items()]
    return {'containers': [spec]}


def _present(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}
