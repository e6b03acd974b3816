"""
A lean kube-apiserver load generator, run as its own process: ``python -m bench.loadserver``.

Why not the emulator (``deploywatch.testing``)? It is built for fidelity:
every write deep-copies the object and every watch event is ``json.dumps``-ed
per watcher, so at thousands of 6 KB events a second it, not the client,
would be what is measured. This server speaks the same wire format for the
few requests watchers make, from pre-serialised bytes (``bench.objects``):

* discovery: the emulator's recorded bodies (``deploywatch/testing/discovery``),
  with ``/apis`` naming only the groups recorded there (apps, apiextensions,
  admissionregistration), so that discovery is complete and kubectl caches it;
* LIST of ``/apis/apps/v1/deployments`` (cluster-wide only: every client here
  watches all namespaces) with ``resourceVersion`` in the list
  metadata, ``limit``/``continue`` pages (as kubectl asks) and items without
  kind/apiVersion; LIST of any other known collection is empty;
* WATCH: HTTP 200, chunked, one ``{"type":...,"object":{...}}\\n`` line per
  chunk; from a resourceVersion it replays what came after it (``410`` ERROR
  when that is older than the current data set), without one it starts with
  an ADDED per object; a BOOKMARK every ``--bookmark-seconds`` when asked for.
  A streaming list, as v1.34+ servers with WatchList on take one
  (``sendInitialEvents=true``, or no resourceVersion or ``0`` with bookmarks
  allowed), ends its ADDEDs with a BOOKMARK annotated
  ``k8s.io/initial-events-end``: the client-go informer of ``bench/informer``
  (v0.37, ``WatchListClient`` on) starts with one.

It runs in its own process so that its CPU time is measurable (the driver
reads ``/proc``) and it shares no GIL with a client. It is steered by JSON
lines on stdin, answered on stdout (logs go to stderr):

* ``{"op": "reset", "n": N}``: a fresh data set of N Deployments (new uids,
  higher resourceVersions), request counters at zero, open watches closed;
* ``{"op": "burst", "m": M}``: M MODIFIED events (rollout status updates,
  round-robin over the objects), rendered first, then released at once and
  written as fast as each watcher's socket takes them (aiohttp's drain);
* ``{"op": "paced", "m": M, "rate": R}``: M events released at R per second
  on an absolute schedule; ``{"op": "times"}`` then answers when each was
  released and written, and how late the pacer ever was, for the latency figure,
  and each event's resourceVersion and its object's previous one, for the
  driver's checks that every change was printed once;
* ``{"op": "stats"}``: requests by kind since the last reset, and open watches.

Every request counts, by kind: ``discovery``, ``list``, ``watch``, ``get`` and
``write`` (any method but GET, answered 2xx with the body echoed so that a
client that writes is seen writing, not failing).
"""
import argparse
import asyncio
import base64
import collections
import datetime
import json
import pathlib
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bench import objects
from deploywatch.testing.errors import ApiError
from deploywatch.testing.server import ADMIN_TOKEN, DISCOVERY, VERSION

NAMESPACES = 50
WATCH_OBJECT = b'{"type":"%s","object":{"kind":"Deployment","apiVersion":"apps/v1",'
ADDED, MODIFIED = WATCH_OBJECT % b'ADDED', WATCH_OBJECT % b'MODIFIED'
DEPLOYMENTS = '/apis/apps/v1/deployments'


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def _status(error: ApiError) -> web.Response:
    return web.json_response(error.status(), status=error.code)


def _kinds() -> dict[str, tuple[str, str]]:
    """Collection path -> (kind, apiVersion) for every resource in the recorded discovery."""
    found: dict[str, tuple[str, str]] = {}
    for path in DISCOVERY.glob('api*-*.json'):
        body = json.loads(path.read_text())
        prefix = '/api/v1' if body['groupVersion'] == 'v1' else f"/apis/{body['groupVersion']}"
        for resource in body['resources']:
            if '/' not in resource['name']:
                found[f"{prefix}/{resource['name']}"] = (resource['kind'], body['groupVersion'])
    return found


INITIAL_EVENTS_END = 'k8s.io/initial-events-end'


def _streaming_list(query: Mapping[str, str]) -> bool:
    """
    Whether a watch is a streaming list: ``sendInitialEvents=true`` with bookmarks, or (as
    ``SetListOptionsDefaults`` makes it with WatchList on) no resourceVersion or ``0``, with
    bookmarks and without a ``resourceVersionMatch``.
    """
    if query.get('allowWatchBookmarks') not in ('true', '1'):
        return False
    if 'sendInitialEvents' in query:
        return query['sendInitialEvents'] in ('true', '1')
    return not query.get('resourceVersionMatch') and query.get('resourceVersion', '') in ('', '0')


class Cluster:
    """The Deployments, their event feed, and what was asked of them."""

    def __init__(self, bookmark_seconds: float) -> None:
        self.bookmark_seconds = bookmark_seconds
        self.template = objects.template()
        self.rv = 1000
        self.first = self.base = self.rv
        self.tails: list[bytes] = []
        self.versions: list[int] = []
        self.steps: list[int] = []
        self.times: list[str] = []
        self.lines: list[bytes] = []  # event i has resourceVersion base + 1 + i
        self.previous: list[int] = []  # event i's object's resourceVersion before it (its old object's)
        self.released = 0
        self.released_at: list[float] = []
        self.written_at: dict[int, float] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.odd_paths: collections.Counter[str] = collections.Counter()
        self.watches: set[asyncio.Task[Any]] = set()
        self.streaming = 0  # open watches of deployments
        self.pacing_lag = 0.0  # how late the pacer released an event, at most
        self._wakeup = asyncio.Event()
        self._pacer: asyncio.Task[None] | None = None

    # -- control -----------------------------------------------------------------------

    def reset(self, n: int) -> dict[str, Any]:
        for task in self.watches:
            task.cancel()
        if self._pacer is not None:
            self._pacer.cancel()
        keys = sorted((f'team-{j % NAMESPACES:02d}', f'app-{j:05d}') for j in range(n))
        self.first = self.rv + 1
        self.tails = [objects.personalise(self.template, name=name, namespace=namespace,
                                          uid=str(uuid.uuid4())) for namespace, name in keys]
        self.versions = list(range(self.first, self.first + n))
        self.rv = self.base = self.first + n - 1
        self.steps, self.times = [0] * n, [objects.CREATED] * n
        self.lines, self.previous, self.released, self.released_at = [], [], 0, []
        self.written_at.clear()
        self.requests.clear()
        self.odd_paths.clear()
        return {'n': n, 'resourceVersion': self.rv, 'first': self.first,
                'event_bytes': len(ADDED) + len(self.tail(0)) + 2 if n else 0}

    def _render(self) -> bytes:
        """The next MODIFIED line: one object's rollout moves one step."""
        index = len(self.lines) % len(self.tails)
        self.previous.append(self.versions[index])
        self.rv += 1
        self.steps[index] += 1
        self.versions[index], self.times[index] = self.rv, _now()
        line = b''.join((MODIFIED, self.tail(index), b'}\n'))
        self.lines.append(line)
        return line

    def _release(self, count: int) -> float:
        self.released += count
        at = time.monotonic()
        self.released_at.extend([at] * count)
        self._wakeup.set()
        self._wakeup = asyncio.Event()
        return at

    def burst(self, m: int) -> dict[str, Any]:
        started = time.monotonic()
        for _ in range(m):
            self._render()
        rendered = time.monotonic()
        return {'released_at': self._release(m), 'render_seconds': rendered - started}

    def paced(self, m: int, rate: float) -> dict[str, Any]:
        self._pacer = asyncio.create_task(self._pace(m, rate))
        return {'started_at': time.monotonic()}

    async def _pace(self, m: int, rate: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.pacing_lag = 0.0
        for k in range(m):
            delay = start + k / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.pacing_lag = max(self.pacing_lag, loop.time() - start - k / rate)
            self._render()
            self._release(1)

    def times_since(self, first_event: int) -> dict[str, Any]:
        """
        Release and first write time per resourceVersion, for events from index ``first_event``.

        ``previous`` is, per event, the resourceVersion its object had before it: what
        a client that prints the *old* object of an update (client-go's UpdateFunc) shows.
        """
        versions = range(self.base + 1 + first_event, self.base + 1 + self.released)
        return {'versions': list(versions), 'previous': self.previous[first_event:self.released],
                'released': self.released_at[first_event:],
                'written': [self.written_at.get(v) for v in versions], 'pacing_lag': self.pacing_lag}

    # -- serving -----------------------------------------------------------------------

    def tail(self, index: int) -> bytes:
        """One object as it is now, without its opening brace (see ``objects.template``)."""
        return objects.render(self.tails[index], rv=self.versions[index], step=self.steps[index],
                              time=self.times[index])

    def item(self, index: int) -> bytes:
        return b'{' + self.tail(index)

    def list_body(self, limit: int, continue_token: str) -> bytes:
        start = int(base64.urlsafe_b64decode(continue_token.encode()).split(b':')[1]) if continue_token else 0
        end = min(start + limit, len(self.tails)) if limit > 0 else len(self.tails)
        metadata: dict[str, Any] = {'resourceVersion': str(self.rv)}
        if end < len(self.tails):
            metadata['continue'] = base64.urlsafe_b64encode(f'{self.rv}:{end}'.encode()).decode()
            metadata['remainingItemCount'] = len(self.tails) - end
        head = b'{"kind":"DeploymentList","apiVersion":"apps/v1","metadata":%s,"items":[' % json.dumps(
            metadata, separators=(',', ':')).encode()
        return b''.join((head, b','.join(self.item(i) for i in range(start, end)), b']}'))

    async def watch(self, request: web.Request) -> web.StreamResponse:
        since = request.query.get('resourceVersion', '')
        bookmarks = request.query.get('allowWatchBookmarks') in ('true', '1')
        timeout = float(request.query.get('timeoutSeconds') or 0) or None
        response = web.StreamResponse(headers={'Content-Type': 'application/json',
                                               'Cache-Control': 'no-cache, private'})
        response.enable_chunked_encoding()
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self.watches.add(task)
        self.streaming += 1
        try:
            if since in ('', '0'):
                for index in range(len(self.tails)):
                    await response.write(b''.join((ADDED, self.tail(index), b'}\n')))
                position = self.released
                if _streaming_list(request.query):
                    await response.write(self._initial_events_end())
            elif not since.isdigit() or int(since) < self.first - 1:
                error = ApiError.expired_watch(int(since) if since.isdigit() else 0, self.first - 1)
                await response.write(json.dumps({'type': 'ERROR', 'object': error.status()}).encode() + b'\n')
                return response
            else:
                position = max(0, int(since) - self.base)
            await self._stream(response, position, bookmarks=bookmarks, timeout=timeout)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.streaming -= 1
            self.watches.discard(task)
        return response

    def _initial_events_end(self) -> bytes:
        body = {'kind': 'Deployment', 'apiVersion': 'apps/v1',
                'metadata': {'resourceVersion': str(self.rv), 'annotations': {INITIAL_EVENTS_END: 'true'}}}
        return json.dumps({'type': 'BOOKMARK', 'object': body}, separators=(',', ':')).encode() + b'\n'

    async def _stream(self, response: web.StreamResponse, position: int, *, bookmarks: bool,
                      timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else float('inf')
        next_bookmark = loop.time() + self.bookmark_seconds
        lines, base, written = self.lines, self.base, self.written_at
        while loop.time() < deadline:
            while position < self.released:
                written.setdefault(base + 1 + position, time.monotonic())
                await response.write(lines[position])
                position += 1
            wakeup = self._wakeup
            try:
                wait = min(deadline, next_bookmark if bookmarks else deadline) - loop.time()
                await asyncio.wait_for(wakeup.wait(), timeout=max(0.0, wait))
            except TimeoutError:
                if bookmarks and loop.time() >= next_bookmark:
                    body = {'kind': 'Deployment', 'apiVersion': 'apps/v1',
                            'metadata': {'resourceVersion': str(self.rv)}}  # v1.34+: no creationTimestamp
                    await response.write(json.dumps({'type': 'BOOKMARK', 'object': body},
                                                    separators=(',', ':')).encode() + b'\n')
                    next_bookmark = loop.time() + self.bookmark_seconds


class Server:
    """The HTTP face: routing, authentication and counting of every request."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.collections = _kinds()
        # /apis names only the groups whose resources are recorded: kubectl treats a group that it
        # cannot discover as an incomplete discovery, and then asks again on every start.
        apis = json.loads((DISCOVERY / 'apis.json').read_text())
        apis['groups'] = [group for group in apis['groups'] if (
            DISCOVERY / f"apis-{group['preferredVersion']['groupVersion'].replace('/', '-')}.json").exists()]
        for group in apis['groups']:
            group['versions'] = [group['preferredVersion']]
        self.apis = json.dumps(apis).encode()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route('*', '/{tail:.*}', self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        requests, path = self.cluster.requests, request.path.rstrip('/')
        # kubectl sends no bearer token over plain http: a missing token is let in, a wrong one is not.
        if request.headers.get('Authorization', f'Bearer {ADMIN_TOKEN}') != f'Bearer {ADMIN_TOKEN}':
            requests['unauthorized'] += 1
            return _status(ApiError.unauthorized())
        if request.method != 'GET':
            requests['write'] += 1
            self.cluster.odd_paths[f'{request.method} {path}'] += 1
            body = await request.read()
            return web.Response(status=201 if request.method == 'POST' else 200, body=body or b'{}',
                                content_type='application/json')
        watching = request.query.get('watch') in ('true', '1')
        if path == DEPLOYMENTS:
            requests['watch' if watching else 'list'] += 1
            if watching:
                return await self.cluster.watch(request)
            query = request.query
            body = self.cluster.list_body(int(query.get('limit') or 0), query.get('continue', ''))
            return web.Response(body=body, content_type='application/json')
        if path in self.collections:
            requests['watch' if watching else 'list'] += 1
            kind, api_version = self.collections[path]
            if watching:
                return await self._idle_watch(request, kind, api_version)
            return web.json_response({'kind': f'{kind}List', 'apiVersion': api_version,
                                      'metadata': {'resourceVersion': str(self.cluster.rv)}, 'items': []})
        requests['discovery'] += 1
        return self._discovery(path)

    def _discovery(self, path: str) -> web.Response:
        if path == '/version':
            return web.json_response(VERSION)
        if path == '/apis':
            return web.Response(body=self.apis, content_type='application/json')
        parts = path.strip('/').split('/')
        recorded = DISCOVERY / f"{'-'.join(parts)}.json"
        if parts[0] in ('api', 'apis') and len(parts) <= 3 and recorded.exists():
            return web.Response(body=recorded.read_bytes(), content_type='application/json')
        self.cluster.odd_paths[f'GET {path}'] += 1
        return _status(ApiError.no_such_path())

    async def _idle_watch(self, request: web.Request, kind: str, api_version: str) -> web.StreamResponse:
        """A watch of a collection with nothing in it (CRDs, namespaces): BOOKMARKs only, if asked for."""
        response = web.StreamResponse(headers={'Content-Type': 'application/json'})
        response.enable_chunked_encoding()
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self.cluster.watches.add(task)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(request.query.get('timeoutSeconds') or 1e9)
        bookmarks = request.query.get('allowWatchBookmarks') in ('true', '1')
        try:
            while (left := deadline - loop.time()) > 0:
                await asyncio.sleep(min(left, self.cluster.bookmark_seconds))
                if bookmarks and loop.time() < deadline:
                    metadata = {'resourceVersion': str(self.cluster.rv)}
                    body = {'kind': kind, 'apiVersion': api_version, 'metadata': metadata}
                    await response.write(json.dumps({'type': 'BOOKMARK', 'object': body}).encode() + b'\n')
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.cluster.watches.discard(task)
        return response


async def control(cluster: Cluster) -> None:
    """Answer the driver's commands, one JSON line each, until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        op = command.pop('op')
        reply: dict[str, Any]
        if op == 'reset':
            reply = cluster.reset(command['n'])
        elif op == 'burst':
            reply = cluster.burst(command['m'])
        elif op == 'paced':
            reply = cluster.paced(command['m'], command['rate'])
        elif op == 'times':
            reply = cluster.times_since(command['first'])
        elif op == 'stats':
            reply = {'requests': dict(cluster.requests), 'odd': dict(cluster.odd_paths.most_common(10)),
                     'released': cluster.released, 'watches': len(cluster.watches),
                     'deployment_watches': cluster.streaming}
        else:
            reply = {'error': f'unknown op {op!r}'}
        sys.stdout.write(json.dumps(reply) + '\n')
        sys.stdout.flush()


async def main(port: int, bookmark_seconds: float) -> None:
    cluster = Cluster(bookmark_seconds)
    runner = web.AppRunner(Server(cluster).app(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, '127.0.0.1', port)
    await site.start()
    sys.stdout.write(json.dumps({'port': runner.addresses[0][1]}) + '\n')
    sys.stdout.flush()
    try:
        await control(cluster)
    finally:
        for task in list(cluster.watches):
            task.cancel()
        await runner.cleanup()


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--port', type=int, default=0)
    parser.add_argument('--bookmark-seconds', type=float, default=60.0)
    arguments = parser.parse_args()
    assert pathlib.Path(DISCOVERY).is_dir()
    asyncio.run(main(arguments.port, arguments.bookmark_seconds))
