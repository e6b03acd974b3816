"""
What a real kube-apiserver compresses, and that no watch deploywatch opens is affected.

v1.37's ``WatchListCompression`` (beta, on) gzips a watch's body when the request is a
streaming list — ``sendInitialEvents=true`` with ``allowWatchBookmarks=true``
(``isListWatchRequest`` in the apiserver's ``handlers/get.go``) — and the client accepts
gzip, which aiohttp, Kopf's and deploywatch's HTTP client, does by default. Its writer
(``perFlushGzipWriter``, the same code in v1.37.0, .1 and .2) closes the gzip member at every
flush, so the body is a series of members, one per batch of events. On the real servers:

* only a streaming list is compressed, on v1.37 only; but with the WatchList gate on (v1.34
  and v1.37), a watch from ``""`` or ``"0"`` with ``allowWatchBookmarks`` *is* a streaming list
  (``SetListOptionsDefaults``: it ends its initial events with a BOOKMARK, and is gzipped on
  v1.37); a watch from a listed resourceVersion never is;
* aiohttp decodes every member of such a body into every line (the floor in pyproject);
* deploywatch's Deployment listings are streaming lists (``deploywatch.kube.loop``), gzipped on
  v1.37 and read whole (``test_streaming_list.py`` has the emulated one); every other watch its
  process opened — its Deployment watches resumed, Kopf's namespace observer (a glob) and
  resource observer, Kopf's peering — starts from a listed resourceVersion, and, replayed byte
  for byte with aiohttp's headers, is answered uncompressed.
"""
import asyncio
import json
import os
import pathlib
import ssl
import time
import urllib.parse
import zlib
from typing import Any

import aiohttp
import pytest
import yaml

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import OperatorProcess, eventually, of
from tests.harness.realk8s import ControlPlane
from tests.robustness.conftest import PEERING, Peers

STREAMING_LIST = 'sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan'
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


def serves_streaming_lists(kubeconfig: pathlib.Path) -> bool:
    """Whether the server serves streaming lists (200), or refuses them (422: the WatchList gate is off)."""
    server, context, token = _credentials(kubeconfig)

    async def get() -> int:
        authorization = {'Authorization': f'Bearer {token}'}
        path = (f'/apis/apps/v1/namespaces/default/deployments?watch=1&{STREAMING_LIST}'
                '&resourceVersion=&timeoutSeconds=1')
        async with (aiohttp.ClientSession(headers=authorization) as session,
                    session.get(server + path, ssl=context) as response):
            await response.read()
            assert response.status in (200, 422), (response.status, await response.text())
            return response.status

    return asyncio.run(get()) == 200


def gzip_members(raw: bytes, *, whole: bool = True) -> list[bytes]:
    """The body split into its gzip members, each decompressed on its own (``whole``: none cut short)."""
    members = []
    while raw:
        member = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        members.append(member.decompress(raw))
        assert member.eof or not whole, 'a gzip member cut short'
        raw = member.unused_data
    return members


def streaming_list(cluster: Cluster, namespace: str, *, decompress: bool) -> Answer:
    """
    A streaming list of ``namespace``'s Deployments, read on as a watch: once the initial events
    have ended, one label is changed, and the stream is read until that MODIFIED. So the body
    holds at least two flushes of the server's: the listing, and the change.
    """
    server, context, token = _credentials(cluster.kubeconfig)
    path = (f'/apis/apps/v1/namespaces/{namespace}/deployments?watch=1&{STREAMING_LIST}&resourceVersion='
            '&timeoutSeconds=30')

    def text(raw: bytes, encoding: str | None) -> bytes:
        return b''.join(gzip_members(raw, whole=False)) if encoding == 'gzip' and not decompress else raw

    async def read() -> Answer:
        authorization = {'Authorization': f'Bearer {token}'}
        async with (aiohttp.ClientSession(auto_decompress=decompress, headers=authorization) as session,
                    session.get(server + path, ssl=context) as response):
            assert response.status == 200, await response.text()
            encoding, raw, changed = response.headers.get('Content-Encoding'), b'', ''
            async for chunk in response.content.iter_any():
                raw += chunk
                so_far = text(raw, encoding)
                if not changed and INITIAL_EVENTS_END.encode() in so_far:
                    label = {'metadata': {'labels': {'gzip': str(decompress).lower()}}}
                    written = await asyncio.to_thread(cluster.patch, namespace, 'web-0', label)
                    changed = written['metadata']['resourceVersion']
                if changed and f'"resourceVersion":"{changed}"'.encode() in so_far:
                    return Answer(dict(response.headers), raw, so_far)
        raise AssertionError(f'the stream ended before the change: {raw!r}')

    return asyncio.run(read())


def _streamed_in_gzip_members(cluster: Cluster, namespace: str, names: set[str]) -> None:
    """A streaming list, read raw and decoded: the same events; on v1.37, gzip members ending in events."""
    raw, decoded = (streaming_list(cluster, namespace, decompress=flag) for flag in (False, True))
    for streamed in (raw, decoded):
        added = [line['object']['metadata']['name'] for line in streamed.lines if line['type'] == 'ADDED']
        assert sorted(added) == sorted(names), streamed.lines
        ends = [line for line in streamed.lines if line['type'] == 'BOOKMARK'
                and line['object']['metadata'].get('annotations', {}).get(INITIAL_EVENTS_END) == 'true']
        assert len(ends) == 1, f'no BOOKMARK ending the initial events: {streamed.lines}'
        assert streamed.lines[-1]['type'] == 'MODIFIED', streamed.lines
    if cluster.minor >= 37:
        assert raw.encoding == decoded.encoding == 'gzip', (raw.headers, decoded.headers)
        members = gzip_members(raw.raw)
        assert len(members) >= 2, f'one gzip member only: {members}'
        assert all(member.endswith(b'\n') for member in members), members  # a flush ends events, not lines
    else:
        assert raw.encoding is None and decoded.encoding is None, (raw.headers, decoded.headers)


def test_only_a_streaming_list_is_compressed_and_aiohttp_reads_every_member(cluster: Cluster) -> None:
    if cluster.emulated:
        pytest.skip('what a real server does: the emulator is held to its recordings in tests/emulator')
    # A server started with WatchList=false (.ci/e2e-local's third run) refuses them (422): then
    # no watch below is a streaming list, and none is compressed.
    gate_off = 'WatchList=false' in os.environ.get('REALK8S_FEATURE_GATES', '')
    assert serves_streaming_lists(cluster.kubeconfig) is not gate_off
    namespace = cluster.new_namespace()
    names = {f'web-{n}' for n in range(3)}
    versions = [cluster.create(deployment(name, namespace=namespace, replicas=0)) for name in sorted(names)]

    if not gate_off:
        _streamed_in_gzip_members(cluster, namespace, names)

    # What else the server takes for a streaming list (``SetListOptionsDefaults``, with WatchList
    # on: v1.34 and v1.37): a watch from "" or "0" with bookmarks; gzip follows it on v1.37.
    base = f'/apis/apps/v1/namespaces/{namespace}/deployments?watch=1'
    listed = max(int(v['metadata']['resourceVersion']) for v in versions)
    bookmarks = '&allowWatchBookmarks=true'
    for query, streams in [(bookmarks, True), (f'&resourceVersion=0{bookmarks}', True), ('', False),
                           ('&resourceVersion=0', False), (f'&resourceVersion={listed}{bookmarks}', False)]:
        answer = ask(cluster.kubeconfig, base + query)
        ended = any(INITIAL_EVENTS_END in line['object']['metadata'].get('annotations', {})
                    for line in answer.lines)
        assert ended == (streams and not gate_off), (query, answer.lines)
        expected = 'gzip' if streams and not gate_off and cluster.minor >= 37 else None
        assert answer.encoding == expected, (query, answer.headers)


def test_only_deploywatchs_streaming_lists_are_compressed_no_other_watch_of_kopf_or_peering(
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
    streamed, streams = [], serves_streaming_lists(cluster.kubeconfig)
    for resource, uris in sorted(watched.items()):
        for uri in sorted(uris):
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(uri).query, keep_blank_values=True))
            if resource == 'deployments' and 'sendInitialEvents' in query and not streams:
                continue  # refused (422): deploywatch lists with pages, and its watches follow
            answer = ask(cluster.kubeconfig, uri)
            if resource == 'deployments' and 'sendInitialEvents' in query:  # deploywatch's listing
                streamed.append(uri)
                assert query['sendInitialEvents'] == query['allowWatchBookmarks'] == 'true', uri
                assert answer.encoding == ('gzip' if cluster.minor >= 37 else None), (uri, answer.headers)
                assert any(INITIAL_EVENTS_END in line['object']['metadata'].get('annotations', {})
                           for line in answer.lines), answer.lines
                continue
            assert 'sendInitialEvents' not in query and query.get('resourceVersion', '') not in ('', '0'), uri
            assert answer.encoding is None, (resource, uri, answer.headers)
    assert bool(streamed) == streams, watched['deployments']  # v1.34+, unless WatchList=false
