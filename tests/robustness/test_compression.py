"""
No watch a deploywatch process opens is a streaming list, so none is compressed.

deploywatch lists with pages (``deploywatch.kube.loop``: a streaming list, in JSON, costs the
API server twice what pages do). But with the ``WatchList`` gate on (v1.34 and v1.37) a watch
from ``""`` or ``"0"`` with ``allowWatchBookmarks`` *is* a streaming list
(``SetListOptionsDefaults``: it sends every object as an ADDED first, then a BOOKMARK), gzipped
on v1.37 (``WatchListCompression``, when the client accepts gzip, as aiohttp does). Each watch
the process opened — its Deployment watches, Kopf's namespace observer (a glob) and resource
observer, Kopf's peering — starts from a listed resourceVersion, and, replayed byte for byte
with aiohttp's headers, is answered uncompressed.
"""
import asyncio
import json
import pathlib
import ssl
import time
import urllib.parse
from typing import Any

import aiohttp
import yaml

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import OperatorProcess, eventually, of
from tests.harness.realk8s import ControlPlane
from tests.robustness.conftest import PEERING, Peers

INITIAL_EVENTS_END = 'k8s.io/initial-events-end'


class Answer:
    """One watch request's answer: its headers, the body's bytes as sent, and as aiohttp decodes them."""

    def __init__(self, headers: dict[str, str], raw: bytes, decoded: bytes) -> None:
        self.headers, self.raw, self.decoded = headers, raw, decoded
        self.lines: list[dict[str, Any]] = [json.loads(line) for line in decoded.splitlines() if line.strip()]

    @property
    def encoding(self) -> str | None:
        return self.headers.get('Content-Encoding')


def _credentials(kubeconfig: pathlib.Path) -> tuple[str, ssl.SSLContext, str]:
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c['context'] for c in config['contexts'] if c['name'] == config['current-context'])
    cluster = next(c['cluster'] for c in config['clusters'] if c['name'] == context['cluster'])
    user = next(u['user'] for u in config['users'] if u['name'] == context['user'])
    authority = kubeconfig.parent / cluster['certificate-authority']
    return cluster['server'], ssl.create_default_context(cafile=str(authority)), user['token']


def ask(kubeconfig: pathlib.Path, path: str) -> Answer:
    """
    GET ``path`` twice, as a watch that ends after one second: the bytes as sent, then as aiohttp
    reads them with its default headers (``Accept-Encoding: gzip, deflate``).
    """
    server, context, token = _credentials(kubeconfig)
    url = urllib.parse.urlsplit(path)
    query = [(key, value) for key, value in urllib.parse.parse_qsl(url.query, keep_blank_values=True)
             if key != 'timeoutSeconds']
    path = f'{url.path}?{urllib.parse.urlencode([*query, ("timeoutSeconds", "1")])}'

    async def get(decompress: bool) -> tuple[dict[str, str], bytes]:
        authorization = {'Authorization': f'Bearer {token}'}
        async with (aiohttp.ClientSession(auto_decompress=decompress, headers=authorization) as session,
                    session.get(server + path, ssl=context) as response):
            assert response.status == 200, await response.text()
            body = b''.join([line async for line in response.content])
            return dict(response.headers), body

    headers, raw = asyncio.run(get(False))
    _, decoded = asyncio.run(get(True))
    return Answer(headers, raw, decoded)


def test_no_watch_of_deploywatch_kopf_or_peering_is_a_streaming_list_or_compressed(
        cluster: Cluster, control_plane: ControlPlane, peering_object: Peers, start_operator: StartOperator,
        tmp_path: pathlib.Path) -> None:
    prefix = f'gz{int(time.time() * 1000) % 10**8}'
    namespace = cluster.new_namespace(prefix)
    cluster.create(deployment('web', namespace=namespace, replicas=0))
    since = time.time()
    quiet = {'DEPLOYWATCH_RESYNC_SECONDS': '0'}
    replica = start_operator('--all-namespaces', f'--peering={PEERING}', '--priority=1', env=quiet,
                             kubeconfig=cluster.operator_kubeconfig(tmp_path / 'ha.kubeconfig', role='ha'))
    globbed = start_operator(f'--namespace={prefix}-*', env=quiet,
                             kubeconfig=cluster.operator_kubeconfig(tmp_path / 'g.kubeconfig', role='globs'))
    operators: dict[str, OperatorProcess] = {'ha': replica, 'globs': globbed}
    for operator in operators.values():
        operator.wait_for(lambda e: of('web', 'ADDED')(e) and e['namespace'] == namespace, what='ADDED',
                          timeout=60)

    watched: dict[str, set[str]] = {}

    def watches() -> dict[str, set[str]]:
        for role in operators:
            for entry in control_plane.audit(cluster.operator_user(role), since=since):
                if entry['verb'] == 'watch':
                    watched.setdefault(entry['objectRef']['resource'], set()).add(entry['requestURI'])
        return watched

    eventually(lambda: {'deployments', 'namespaces', 'clusterkopfpeerings'} <= watches().keys(),
               what=f'the three kinds of watch in the audit log: {watched.keys()}', timeout=30)
    for resource, uris in sorted(watched.items()):
        for uri in sorted(uris):
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(uri).query, keep_blank_values=True))
            assert 'sendInitialEvents' not in query and query.get('resourceVersion', '') not in ('', '0'), uri
            answer = ask(cluster.kubeconfig, uri)
            assert not any(INITIAL_EVENTS_END in line['object']['metadata'].get('annotations', {})
                           for line in answer.lines), (uri, answer.lines)
            assert answer.encoding is None, (resource, uri, answer.headers)
