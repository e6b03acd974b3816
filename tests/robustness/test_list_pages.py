"""
Paginated LISTs as newer API servers serve them, met on the real server (v1.34 and v1.37).

What kube-apiserver does, from its source (k8s.io/apiserver v0.34.4 and v0.37.2; the
apimachinery of the same versions):

* **Consistent reads from the watch cache** (``ConsistentListFromCache``, GA in v1.34 and gone
  as a gate in v1.37): a LIST with ``limit`` and no ``resourceVersion`` is a consistent read
  (``cacher/delegator/interface.go`` ``ShouldDelegateList``), served from the cache once it has
  caught up with etcd's current revision, not from etcd; the list's resourceVersion is that
  revision, so it may be newer than every item's.
* **Pages from cache snapshots** (``ListFromCacheSnapshot``, beta and on from v1.34): the cache
  keeps a snapshot per resourceVersion, and a ``continue`` token (carrying the first page's
  resourceVersion) is served from the snapshot at or below it (``cacher.go``
  ``ShouldDelegateContinue``, ``shouldDelegateExactRV``): the pages of one listing are one
  snapshot, whatever was written in between. Without such a snapshot the request goes to etcd.
* **After a compaction**: the cache drops its snapshots older than the compacted revision, but
  only once it knows of the compaction: the etcd3 layer follows the key ``compact_rev_key``
  (which every kube-apiserver's own compactor writes before it compacts, every 5 minutes:
  ``etcd3/compact.go`` ``runWatchLoop``, ``Compact``), and the cacher reads that revision every
  15 s (``cacher/compactor.go`` ``compactorPollPeriod``). Until then the token is still served,
  from the snapshot: a compaction made behind the API servers' backs, without the key, leaves
  the snapshots in place. Once the snapshot is gone the request reaches etcd, which answers
  ``ErrCompacted``, and the answer is ``410``, reason ``Expired``, with the message
  :data:`INCONSISTENT_CONTINUE` and a new ``continue`` token of resourceVersion -1
  (``etcd3/errors.go`` ``handleCompactedErrorForPaging``): following it gives the rest at the
  *current* state, an inconsistent list; starting over gives a consistent one.
* **Streamed JSON of LIST bodies** (``StreamingCollectionEncodingToJSON``, GA in v1.34 and
  unconditional in v1.37's ``NewDefaultAPIGroupInfo``): a list is written item by item, not as
  one encoded buffer (``serializer/json/collections.go``). The response sets no
  Content-Length, so Go's HTTP/1.1 server sends it chunked as soon as the body outgrows its
  2048-byte buffer, one chunk per buffer flush: many chunks for a list, one for a single object
  (written at once). A client that accepts gzip gets the list buffered up to 128 KiB
  (``responsewriters/writers.go`` ``deferredResponseWriter``), gzipped above.

deploywatch lists with pages, with Kopf's ``chunk_size`` (``deploywatch.handlers.LIST_CHUNK`` = 2000, no
setting changes it), so to make a listing of a few Deployments take several pages, the
operator reaches the server through :class:`ListingProxy`, an HTTP proxy that asks the server
for one item per page (a server may always return fewer items than ``limit``), and that holds
the listing's first ``continue`` request while the test compacts etcd: the expiry falls
between two pages of deploywatch's listing, deterministically.

The emulator (``deploywatch.testing``) plays the snapshots and the 410 (at once, with the
older message of etcd3's ``continueExpired`` and no new token), so (a) and (b) run on both.
"""
import asyncio
import base64
import contextlib
import dataclasses
import json
import pathlib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness import identity
from tests.harness.clusters import Cluster, EmulatedCluster
from tests.harness.operator import Event, eventually, of
from tests.harness.realk8s import ControlPlane
from tests.harness.truth import wait_until_consistent

Obj = dict[str, Any]
Compact = Callable[[], int]

RESYNC_OFF = {'DEPLOYWATCH_RESYNC_SECONDS': '0'}
COMPACT_REV_KEY = 'compact_rev_key'  # etcd3/compact.go: the key every kube-apiserver follows
LEARNS = 60.0  # seconds for the watch cache to drop compacted snapshots: a 15 s poll, on a loaded machine
SETTLE = 60.0  # seconds for a real deployment controller to finish writing status
CONTINUE_EXPIRED = ('The provided continue parameter is too old to display a consistent list result. '
                    'You can start a new list without the continue parameter')
INCONSISTENT_CONTINUE = (
    'The provided continue parameter is too old to display a consistent list result. You can start '
    'a new list without the continue parameter, or use the continue token in this response to '
    'retrieve the remainder of the results. Continuing with the provided token results in an '
    'inconsistent list - objects that were created, modified, or deleted between the time the '
    'first chunk was returned and now may show up in the list.')


# -- talking to the API server and etcd directly ------------------------------------------------

def _credentials(kubeconfig: pathlib.Path) -> tuple[str, ssl.SSLContext | None, str]:
    """The server, a TLS context trusting its CA (None for plain http), the token."""
    config = yaml.safe_load(kubeconfig.read_text())  # JSON (the emulator's) is YAML too
    context = next(c['context'] for c in config['contexts'] if c['name'] == config['current-context'])
    cluster = next(c['cluster'] for c in config['clusters'] if c['name'] == context['cluster'])
    user = next(u['user'] for u in config['users'] if u['name'] == context['user'])
    authority = cluster.get('certificate-authority')
    tls = ssl.create_default_context(cafile=str(kubeconfig.parent / authority)) if authority else None
    return str(cluster['server']), tls, str(user['token'])


def _get(cluster: Cluster, path: str) -> tuple[int, Obj]:
    """GET ``path`` as the admin: the status code and the JSON body (a Status for an error)."""
    server, tls, token = _credentials(cluster.kubeconfig)
    request = urllib.request.Request(server + path, headers={'Authorization': f'Bearer {token}',
                                                             'Accept': 'application/json'})
    try:
        with urllib.request.urlopen(request, context=tls, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def _page(cluster: Cluster, namespace: str, token: str = '') -> tuple[int, Obj]:
    query = urllib.parse.urlencode({'limit': '1', **({'continue': token} if token else {})})
    return _get(cluster, f'/apis/apps/v1/namespaces/{namespace}/deployments?{query}')


def _names(page: Obj) -> list[str]:
    return [item['metadata']['name'] for item in page['items']]


def _token(token: str) -> Obj:
    """What a continue token holds (etcd3's ``encodeContinue``: base64url JSON ``{"v","rv","start"}``)."""
    decoded: Obj = json.loads(base64.urlsafe_b64decode(token + '=' * (-len(token) % 4)))
    return decoded


def _etcd(url: str, call: str, body: Obj) -> Obj:
    """One call to etcd's JSON gateway (gRPC's API over HTTP, keys and values base64)."""
    request = urllib.request.Request(url + call, json.dumps(body).encode(),
                                     {'Content-Type': 'application/json'})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: Obj = json.loads(response.read())
        return answer


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _compact_etcd(url: str) -> int:
    """
    Compact etcd at its current revision as a kube-apiserver's compactor does: the revision
    under ``compact_rev_key`` first (every API server follows that key), then the compaction.
    The revision compacted at.
    """
    revision = int(_etcd(url, '/v3/kv/range', {'key': _b64(COMPACT_REV_KEY)})['header']['revision'])
    _etcd(url, '/v3/kv/put', {'key': _b64(COMPACT_REV_KEY), 'value': _b64(str(revision))})
    _etcd(url, '/v3/kv/compaction', {'revision': str(revision), 'physical': True})
    return revision


@pytest.fixture
def compact(cluster: Cluster) -> Compact:
    """How to compact the cluster's storage now: the emulator's store, or the loopback etcd."""
    if isinstance(cluster, EmulatedCluster):
        thread = cluster.server

        def emulated() -> int:
            thread.call(thread.server.store.compact)
            return thread.call(lambda: thread.server.store.resource_version)
        return emulated
    plane = ControlPlane.from_environment()
    here = identity.server_of(cluster.kubeconfig)
    if plane is None or identity.server_of(plane.directory / 'kubeconfig') != here:
        pytest.skip('compacting etcd needs the loopback control plane of tests/cluster (REALK8S_DIR) '
                    'as the cluster under test: make e2e-local or CI')
    url = plane.etcd_url
    return lambda: _compact_etcd(url)


def _settle(cluster: Cluster, namespace: str) -> dict[str, Obj]:
    """
    The namespace's Deployments by name, once a real deployment controller has written their
    status (at once on the emulator): a settled Deployment changes only when the test changes it.
    """
    def done(obj: Obj) -> bool:
        status = obj.get('status') or {}
        conditions = {c['type']: c for c in status.get('conditions') or ()}
        return bool(status.get('observedGeneration') == obj['metadata']['generation']
                    and conditions.get('Progressing', {}).get('reason') == 'NewReplicaSetAvailable'
                    and conditions.get('Available', {}).get('status') == 'True')
    deadline = time.monotonic() + SETTLE
    while True:
        truth = {obj['metadata']['name']: obj for obj in cluster.truth({namespace}).values()}
        if cluster.emulated or all(done(obj) for obj in truth.values()):
            return truth
        assert time.monotonic() < deadline, {name: obj.get('status') for name, obj in truth.items()}
        time.sleep(0.2)


# -- (a) the server's own rules, asked raw ------------------------------------------------------

def test_pages_are_one_snapshot_and_a_continue_expires_once_the_cache_knows_of_a_compaction(
        cluster: Cluster, compact: Compact) -> None:
    namespace = cluster.new_namespace('pages')
    for name in ('web-a', 'web-b', 'web-c'):
        cluster.create(deployment(name, namespace=namespace, replicas=0))
    _settle(cluster, namespace)

    status, first = _page(cluster, namespace)
    assert status == 200, first
    listed_at = first['metadata']['resourceVersion']
    assert _names(first) == ['web-a'] and first['metadata']['remainingItemCount'] == 2, first['metadata']
    token = first['metadata']['continue']
    assert _token(token)['rv'] == int(listed_at)  # the token carries the listing's version
    assert int(first['items'][0]['metadata']['resourceVersion']) <= int(listed_at)

    # Written between the pages: a new Deployment after the cursor, a change to one not yet listed.
    late = cluster.create(deployment('web-d', namespace=namespace, replicas=0))
    changed = cluster.patch(namespace, 'web-b', {'metadata': {'labels': {'changed': 'yes'}}})
    assert int(late['metadata']['resourceVersion']) > int(listed_at)

    status, second = _page(cluster, namespace, token)
    assert status == 200, second
    status, third = _page(cluster, namespace, second['metadata']['continue'])
    assert status == 200, third
    assert [_names(page) for page in (second, third)] == [['web-b'], ['web-c']]
    assert not third['metadata'].get('continue')  # the snapshot held three: web-d is not in it
    assert {page['metadata']['resourceVersion'] for page in (second, third)} == {listed_at}
    web_b = second['items'][0]['metadata']
    assert 'changed' not in web_b['labels'], web_b  # as it was at the first page's version
    assert int(web_b['resourceVersion']) <= int(listed_at) < int(changed['metadata']['resourceVersion'])

    compacted = compact()
    assert compacted > int(listed_at)
    answers: list[tuple[int, Obj]] = []

    def expired() -> bool:
        answers.append(_page(cluster, namespace, token))
        return answers[-1][0] != 200
    eventually(expired, what=f'the continue token of {listed_at} refused after a compaction at {compacted}',
               timeout=LEARNS)

    # Until the cache learned of the compaction, the token still gave the snapshot's page, never another.
    for _, page in answers[:-1]:
        assert (_names(page), page['metadata']['resourceVersion']) == (['web-b'], listed_at), page
    status, refused = answers[-1]
    assert (status, refused['code'], refused['reason']) == (410, 410, 'Expired'), refused
    assert refused['message'].startswith(CONTINUE_EXPIRED), refused
    if not cluster.emulated:
        # etcd3's handleCompactedErrorForPaging: the message offers a token for the inconsistent rest.
        assert refused['message'] == INCONSISTENT_CONTINUE, refused
        rest = refused['metadata']['continue']
        assert _token(rest)['rv'] == -1, _token(rest)
        names, versions = [], set()
        while rest:
            status, page = _page(cluster, namespace, rest)
            assert status == 200, page
            names += _names(page)
            versions.add(int(page['metadata']['resourceVersion']))
            rest = page['metadata'].get('continue', '')
        assert names == ['web-b', 'web-c', 'web-d'], names  # today's state: web-d shows up
        assert min(versions) >= compacted

    # Starting over is a consistent listing at a version etcd still has.
    status, again = _page(cluster, namespace)
    assert status == 200 and _names(again) == ['web-a'], again
    assert int(again['metadata']['resourceVersion']) >= compacted
    assert again['metadata']['remainingItemCount'] == 3


# -- (b) deploywatch's listing when a continue expires under it ---------------------------------

@dataclasses.dataclass(frozen=True)
class Listing:
    """One LIST of Deployments the proxy forwarded: its query as sent upstream, and the answer's status."""
    query: dict[str, str]
    status: int


HOP_BY_HOP = {'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer',
              'transfer-encoding', 'upgrade', 'host', 'content-length'}


class ListingProxy:
    """
    An HTTP proxy (plain http towards the operator, the server's own scheme towards it) that
    forwards every request and streams every answer as it comes, watches included, except that
    a LIST of Deployments asks the server for ``limit`` items a page, and, once armed with
    :meth:`hold_next_continue`, the next LIST with a ``continue`` waits until :meth:`release`.
    The operator's token passes through untouched. It runs its own event loop in a thread.
    """

    def __init__(self, kubeconfig: pathlib.Path, *, limit: str) -> None:
        self.target, self._tls, _ = _credentials(kubeconfig)
        self.limit = limit
        self.listings: list[Listing] = []
        self.held_token = ''
        self._held = threading.Event()
        self._armed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name='listing-proxy', daemon=True)
        self._thread.start()
        self._release: asyncio.Event = self._call(self._event())
        self._session: aiohttp.ClientSession = self._call(self._open_session())
        self._runner = web.AppRunner(self._app(), handler_cancellation=True, shutdown_timeout=1.0,
                                     access_log=None)
        self.port: int = self._call(self._listen())

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    @staticmethod
    async def _event() -> asyncio.Event:
        return asyncio.Event()

    @staticmethod
    async def _open_session() -> aiohttp.ClientSession:
        # The client's own headers go upstream as they are: no Accept-Encoding or User-Agent of ours.
        return aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None),
                                     skip_auto_headers=('Accept-Encoding', 'User-Agent', 'Content-Type'))

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route('*', '/{path:.*}', self._forward)
        return app

    async def _listen(self) -> int:
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(('127.0.0.1', 0))
        await web.SockSite(self._runner, sock).start()
        port: int = sock.getsockname()[1]
        return port

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        query = list(request.query.items())
        listing = (request.method == 'GET' and request.path.endswith('/deployments')
                   and request.query.get('watch') not in ('1', 'true'))
        if listing:
            query = [(key, self.limit if key == 'limit' else value) for key, value in query]
            if request.query.get('continue') and self._armed:
                self._armed = False
                self.held_token = request.query['continue']
                self._held.set()
                await self._release.wait()
        url = self.target + request.path + (f'?{urllib.parse.urlencode(query)}' if query else '')
        headers = {key: value for key, value in request.headers.items() if key.lower() not in HOP_BY_HOP}
        body = await request.read() if request.can_read_body else None
        async with self._session.request(request.method, url, headers=headers, data=body,
                                         ssl=self._tls if self._tls is not None else True) as upstream:
            if listing:
                self.listings.append(Listing(dict(query), upstream.status))
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value)
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError):  # the client went away (a watch it closed)
                async for data in upstream.content.iter_any():
                    await response.write(data)
                await response.write_eof()
            return response

    def hold_next_continue(self) -> None:
        self._armed = True

    def wait_held(self, *, timeout: float = 60.0) -> str:
        """The continue token of the LIST being held, once one is; fail after the bound."""
        assert self._held.wait(timeout), f'no LIST with a continue token came; listings: {self.listings}'
        return self.held_token

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._release.set)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self.release()

        async def stop() -> None:
            await self._runner.cleanup()
            await self._session.close()
        self._call(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


@pytest.fixture
def listing_proxy(cluster: Cluster) -> Iterator[ListingProxy]:
    """One Deployment per LIST page, between the operator and the server (the test goes direct)."""
    proxy = ListingProxy(cluster.kubeconfig, limit='1')
    yield proxy
    proxy.close()


def _added(events: list[Event]) -> dict[str, list[Event]]:
    by_uid: dict[str, list[Event]] = {}
    for event in events:
        if event['type'] == 'ADDED':
            by_uid.setdefault(event['uid'], []).append(event)
    return by_uid


def test_deploywatch_lists_again_from_the_start_when_a_continue_expires_mid_listing(
        cluster: Cluster, compact: Compact, listing_proxy: ListingProxy, start_operator: StartOperator,
        tmp_path: pathlib.Path) -> None:
    namespace = cluster.new_namespace('pages')
    for name in ('web-a', 'web-b', 'web-c'):
        cluster.create(deployment(name, namespace=namespace, replicas=0))
    _settle(cluster, namespace)
    kubeconfig = cluster.operator_kubeconfig(tmp_path / 'proxied.kubeconfig', server=listing_proxy.url)

    listing_proxy.hold_next_continue()
    operator = start_operator(f'--namespace={namespace}', env=RESYNC_OFF, kubeconfig=kubeconfig)
    token = listing_proxy.wait_held()  # the listing's second page, asked for, and held
    listed_at = _token(token)['rv']
    operator.wait_for(of('web-a', 'ADDED'), what='the first page printed while the second is held')

    cluster.create(deployment('web-d', namespace=namespace, replicas=0))  # after the listing's version
    compacted = compact()
    assert compacted > listed_at
    eventually(lambda: _page(cluster, namespace, token)[0] == 410,
               what=f'the held continue token of {listed_at} refused by the server', timeout=LEARNS)
    printed = operator.matching(lambda _: True)
    assert [e['name'] for e in printed] == ['web-a'], printed
    listing_proxy.release()

    operator.wait_for_count(lambda e: e['type'] == 'ADDED', 4, what='every Deployment listed, once')
    cluster.create(deployment('sentinel', namespace=namespace, replicas=0))
    assert operator.wait_for(of('sentinel', 'ADDED'), what='sentinel: the watch is open')['initial'] is False
    assert wait_until_consistent(operator, lambda: cluster.truth({namespace}), namespaces={namespace},
                                 timeout=SETTLE) == []

    # The expired page was the only 410, and the listing after it started over, then went to its end.
    pages = [(bool(listing.query.get('continue')), listing.status) for listing in listing_proxy.listings]
    assert pages[:6] == [(False, 200), (True, 410), (False, 200), *[(True, 200)] * 3], pages
    events = operator.matching(lambda _: True)
    added = _added(events)
    assert sorted(e[0]['name'] for e in added.values()) == ['sentinel', 'web-a', 'web-b', 'web-c', 'web-d']
    assert all(len(each) == 1 for each in added.values()), added  # nothing printed twice
    assert all(each[0]['initial'] for each in added.values() if each[0]['name'] != 'sentinel')
    assert not [e for e in events if e['type'] == 'DELETED'], events  # nothing inferred gone
    # web-a was printed by the expired listing and found unchanged by the new one: printed once.
    assert [e['type'] for e in events[len(printed):] if e['name'] == 'web-a'] == []


# -- (c) a large LIST body, streamed ------------------------------------------------------------

@dataclasses.dataclass
class Framed:
    """An HTTP/1.1 answer as sent: status, headers (lower-case), the sizes of its chunks, the body."""
    status: int
    headers: dict[str, str]
    chunks: list[int] | None  # None: not chunked
    body: bytes


def _framed(cluster: Cluster, path: str, *, gzip: bool = False) -> Framed:
    """GET ``path`` as the admin over a raw TLS socket, to see the framing an HTTP client hides."""
    server, tls, token = _credentials(cluster.kubeconfig)
    parts = urllib.parse.urlsplit(server)
    assert tls is not None and parts.hostname is not None and parts.port is not None, server
    with (socket.create_connection((parts.hostname, parts.port), timeout=30) as raw,
          tls.wrap_socket(raw, server_hostname=parts.hostname) as sock,
          sock.makefile('rb') as stream):
        sock.sendall((f'GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n'
                      'Accept: application/json\r\nConnection: close\r\n'
                      + ('Accept-Encoding: gzip, deflate\r\n' if gzip else '') + '\r\n').encode())
        status = int(stream.readline().split()[1])
        headers: dict[str, str] = {}
        while (line := stream.readline().decode()) not in ('\r\n', ''):
            name, _, value = line.partition(':')
            headers[name.strip().lower()] = value.strip()
        if headers.get('transfer-encoding') != 'chunked':
            return Framed(status, headers, None, stream.read(int(headers['content-length'])))
        chunks, body = [], b''
        while size := int(stream.readline().strip(), 16):
            body += stream.read(size)
            assert stream.read(2) == b'\r\n'
            chunks.append(size)
        return Framed(status, headers, chunks, body)


def test_a_large_list_is_streamed_item_by_item_and_deploywatch_reads_it(
        cluster: Cluster, start_operator: StartOperator) -> None:
    if cluster.emulated:
        pytest.skip('the emulator sends every body whole, with a Content-Length: '
                    'a streamed LIST body is what a real server sends')
    namespace = cluster.new_namespace('large')
    count = 30
    padding = {'deploywatch.test/padding': 'x' * 4000}  # a Deployment of ~7 KB, a list of ~200 KB
    for n in range(count):
        body = deployment(f'web-{n:02d}', namespace=namespace, replicas=0)
        body['metadata']['annotations'] = padding
        cluster.create(body)
    path = f'/apis/apps/v1/namespaces/{namespace}/deployments'

    plain = _framed(cluster, f'{path}?limit=2000')  # deploywatch's query
    single = _framed(cluster, f'{path}/web-00')
    assert (plain.status, single.status) == (200, 200)
    assert 'content-length' not in plain.headers and plain.chunks is not None, plain.headers
    assert len(json.loads(plain.body)['items']) == count
    # Every item larger than the server's 2048-byte buffer is flushed on its own: a chunk or more each,
    # where a single object, encoded whole and written at once, is one chunk.
    assert len(plain.chunks) >= count and max(plain.chunks) < len(plain.body) // 10, plain.chunks
    assert single.chunks == [len(single.body)], single.chunks

    # What deploywatch's client (aiohttp) asks for: gzip, above 128 KiB; still chunked, no length.
    zipped = _framed(cluster, f'{path}?limit=2000', gzip=True)
    assert zipped.status == 200 and zipped.headers.get('content-encoding') == 'gzip', zipped.headers
    assert 'content-length' not in zipped.headers and zipped.chunks, zipped.headers
    assert len(json.loads(zlib.decompress(zipped.body, wbits=zlib.MAX_WBITS | 16))['items']) == count

    operator = start_operator(f'--namespace={namespace}', env=RESYNC_OFF)
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', count, what='every Deployment of the listing')
    cluster.create(deployment('sentinel', namespace=namespace, replicas=0))
    assert operator.wait_for(of('sentinel', 'ADDED'), what='sentinel: the watch is open')['initial'] is False
    assert wait_until_consistent(operator, lambda: cluster.truth({namespace}), namespaces={namespace},
                                 timeout=SETTLE) == []
    added = _added(operator.matching(lambda _: True))
    assert len(added) == count + 1 and all(len(each) == 1 for each in added.values()), added
    assert all(each[0]['initial'] for each in added.values() if each[0]['name'] != 'sentinel')
