"""
Deployments made on a real API server as clients make them: one POST each, many at once.

``make bench-apiserver`` needs tens of thousands of realistic Deployments in a real
kube-apiserver before it measures anything. They are created through the API (no etcd
import, no fixture), so the server defaults, validates, versions and records
``managedFields`` itself, exactly as for a user's ``kubectl apply``:

* the body is ``deploywatch.testing.factory.deployment(sidecar=True)`` (two containers,
  env, probes, resources) with the ``kubectl.kubernetes.io/last-applied-configuration``
  annotation, POSTed with ``fieldManager=kubectl-client-side-apply`` (what ``kubectl
  apply`` sends for a new object), ``replicas: 0``;
* then, unless told not to, the rolled-out status a deployment controller would write
  (``observedGeneration``, the replica counts, ``Available`` and ``Progressing``), PUT to the
  ``status`` subresource with ``fieldManager=kube-controller-manager``: the objects then
  carry what a real cluster's do, with the controller stopped during the measurement;
* requests go over one aiohttp session with :data:`CONCURRENCY` connections, the
  Deployments spread round-robin over namespaces ``bench-00``...
"""
import asyncio
import dataclasses
import json
import pathlib
import ssl
import time
from typing import Any

import aiohttp
import yaml

from deploywatch.testing import factory

CONCURRENCY = 32  # connections at once: enough to keep a 2-core kube-apiserver busy, not to starve it
CREATED = '2024-05-01T09:00:00Z'
Obj = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to talk to it, from an admin kubeconfig."""
    server: str
    token: str
    tls: ssl.SSLContext

    @classmethod
    def of(cls, kubeconfig: pathlib.Path) -> 'Credentials':
        config = yaml.safe_load(kubeconfig.read_text())
        context = next(c['context'] for c in config['contexts'] if c['name'] == config['current-context'])
        cluster = next(c['cluster'] for c in config['clusters'] if c['name'] == context['cluster'])
        user = next(u['user'] for u in config['users'] if u['name'] == context['user'])
        tls = ssl.create_default_context(cafile=str(kubeconfig.parent / cluster['certificate-authority']))
        return cls(server=str(cluster['server']), token=str(user['token']), tls=tls)


@dataclasses.dataclass(frozen=True)
class Made:
    """What :func:`populate` made, and how fast."""
    count: int
    namespaces: int
    seconds: float
    requests: int
    object_bytes: int  # one Deployment as the server returns it (JSON), after the status write
    status: bool

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


def manifest(name: str, namespace: str) -> Obj:
    """A Deployment as ``kubectl apply`` sends it on creation: with its last-applied annotation."""
    body = factory.deployment(name, namespace=namespace, replicas=0, sidecar=True)
    applied = json.dumps(body, separators=(',', ':')) + '\n'
    body['metadata']['annotations'] = {'kubectl.kubernetes.io/last-applied-configuration': applied}
    return body


def rolled_out(obj: Obj) -> Obj:
    """The status a deployment controller writes for a rolled-out Deployment of 0 replicas."""
    condition = {'lastUpdateTime': CREATED, 'lastTransitionTime': CREATED}
    obj['status'] = {
        'observedGeneration': obj['metadata']['generation'],
        'conditions': [
            {'type': 'Available', 'status': 'True', 'reason': 'MinimumReplicasAvailable',
             'message': 'Deployment has minimum availability.', **condition},
            {'type': 'Progressing', 'status': 'True', 'reason': 'NewReplicaSetAvailable',
             'message': f'ReplicaSet "{obj["metadata"]["name"]}-5d9c7f8b6" has successfully progressed.',
             **condition}]}
    return obj


async def _populate(credentials: Credentials, *, count: int, namespaces: int, status: bool) -> Made:
    headers = {'Authorization': f'Bearer {credentials.token}', 'Content-Type': 'application/json',
               'Accept': 'application/json'}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY, ssl=credentials.tls)
    requests = 0
    last: Obj = {}
    async with aiohttp.ClientSession(credentials.server, headers=headers, connector=connector) as session:
        async def call(method: str, path: str, body: Obj, manager: str) -> Obj:
            nonlocal requests
            async with session.request(method, path, data=json.dumps(body),
                                       params={'fieldManager': manager}) as response:
                requests += 1
                answer: Obj = await response.json()
                if response.status >= 300:
                    raise RuntimeError(f'{method} {path}: {response.status} {answer.get("message")}')
                return answer

        names = [f'bench-{i:02d}' for i in range(namespaces)]
        await asyncio.gather(*(call('POST', '/api/v1/namespaces', factory.namespace(ns), 'kubectl-create')
                               for ns in names))
        started = time.monotonic()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(count):
            queue.put_nowait(index)

        async def worker() -> None:
            nonlocal last
            while not queue.empty():
                index = queue.get_nowait()
                namespace = names[index % namespaces]
                path = f'/apis/apps/v1/namespaces/{namespace}/deployments'
                body = manifest(f'web-{index:06d}', namespace)
                obj = await call('POST', path, body, 'kubectl-client-side-apply')
                if status:
                    obj = await call('PUT', f'{path}/{obj["metadata"]["name"]}/status', rolled_out(obj),
                                     'kube-controller-manager')
                last = obj

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        seconds = time.monotonic() - started
    return Made(count=count, namespaces=namespaces, seconds=seconds, requests=requests,
                object_bytes=len(json.dumps(last, separators=(',', ':'))), status=status)


def populate(kubeconfig: pathlib.Path, *, count: int, namespaces: int, status: bool = True) -> Made:
    """Create ``count`` Deployments over ``namespaces`` new namespaces (see the module's docstring)."""
    credentials = Credentials.of(kubeconfig)
    return asyncio.run(_populate(credentials, count=count, namespaces=namespaces, status=status))
