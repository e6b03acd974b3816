"""
The HTTP face of the emulated kube-apiserver (aiohttp), for what watchers use.

Served: discovery (``/api``, ``/apis``, group versions, bodies as recorded from
a real v1.24 server; ``/version`` of the emulated version, ``versions``), and
for deployments, namespaces, events and CRDs: GET, LIST (``limit``/``continue``, ``resourceVersion`` with
``resourceVersionMatch``, ``labelSelector``), WATCH, POST, PUT, PATCH, DELETE,
the ``status`` subresource, and the ``scale`` subresource of Deployments (an
``autoscaling/v1`` Scale, as ``kubectl scale`` uses it).

WATCH follows kube-apiserver's wire format (``watch-stream.json``): HTTP 200,
chunked, one compact JSON event per line and per chunk. Without a
resourceVersion (or with "0") it starts with a synthetic ADDED per existing
object; from a version it replays the history after it, or sends one ERROR
event with a 410 ``Status`` and ends the stream when that version is too old
(``watch-too-old-410.json``). With a ``labelSelector`` (``labels``), an object that starts
matching is ADDED, and one that stops is DELETED with its previous state at the version of the
change (``v1.*/watch-selector.json``). With ``allowWatchBookmarks`` it sends BOOKMARKs as
the apiserver's cacher does (``v1.*/watch-bookmarks-*.json``): it looks every
``bookmark_interval`` seconds from the start of the watch (the cacher's minute),
and once more 2 s before the watch's deadline, and sends one only when the
version its watch cache has processed for the resource type is newer than the
watch's resourceVersion, carrying that version: the last change to an object of
the type (in any namespace, matching the watch's selector or not) or, from
v1.34, a later version of the cluster the cache caught up with
(``Store.refresh_watch_cache``: every ``cache_refresh_interval`` and at each
consistent LIST), so that a watch of quiet Deployments gets BOOKMARKs there and
none on v1.24 and v1.28. v1.28 sends none to a watch without a resourceVersion;
from v1.34 such a watch (or one from "0") ends its ADDEDs with a BOOKMARK
annotated ``k8s.io/initial-events-end``. It ends after ``timeoutSeconds`` or,
when none is asked for, after a random time between one and two
``min_request_timeout`` (the apiserver's ``--min-request-timeout`` behaviour).

A watch that names ``sendInitialEvents`` is a streaming list (KEP-3157), validated and
served as the version does (``watchlist``, ``_watch_list``, ``v1.3*/watchlist-*.json``): on
v1.34+ the ADDEDs in storage-key order, the BOOKMARK annotated ``k8s.io/initial-events-end``
at the cluster's resourceVersion, a first look for a BOOKMARK at the cacher's ~1 s bookmark
timer, and on v1.37 gzip, one member per flush, for a client that accepts it; a 422 with the
``ListOptions`` causes where the version (v1.24, v1.28) or the ``WatchList`` gate
(``ApiServer(watch_list=False)``) refuses it. A watch that does not name it is served as
before.

Every response carries an ``Audit-Id`` header, a fresh uuid, as the recorded
ones do.
"""
import asyncio
import contextlib
import copy
import json
import pathlib
import random
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web

from deploywatch.testing import kinds, labels, versions, watchlist
from deploywatch.testing.access import ADMIN, RequestLog, User
from deploywatch.testing.errors import ApiError
from deploywatch.testing.faults import Cut, Faults, WatchCut
from deploywatch.testing.kinds import Obj, ResourceType
from deploywatch.testing.store import Change, Store

DISCOVERY = pathlib.Path(__file__).parent / 'discovery'
VERSION = versions.DEFAULT.version_body()  # what /version answers by default (bench/ serves it too)
ADMIN_TOKEN = 'admin-token'

Middleware = Callable[[web.Request, Any], Any]


STALL_POLL = 0.05  # seconds between looks at a stalled watch's fault
PRE_TIMEOUT_BOOKMARK = 2.0  # the cacher's last BOOKMARK comes this long before the watch's deadline
GZIP_INITIAL_EVENTS = 50  # initial events per gzip member (recorded: 12 to 73, as the cacher's queue held)

def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(body, separators=(',', ':')),
                        content_type='application/json', headers=headers)


class ApiServer:
    def __init__(
            self,
            store: Store | None = None,
            *,
            bookmark_interval: float = 60.0,
            min_request_timeout: float = 1800.0,
            version: versions.KubeVersion | None = None,
            cache_refresh_interval: float | None = None,
            watch_list: bool | None = None,
            bookmark_timer: float = 1.0,
    ) -> None:
        """``version``: the kube-apiserver to answer as (``versions``), for a store made here;
        a given store brings its own. ``cache_refresh_interval``: how often the watch caches
        catch up with the store where the version's cacher follows the cluster
        (``Store.refresh_watch_cache``; kube-apiserver: every 1 to 1.5 minutes); by default
        every ``bookmark_interval`` (the cacher's minute), ``0``: only when a LIST or a test asks.
        ``watch_list``: the ``WatchList`` feature gate (``--feature-gates=WatchList=false``), by default
        the version's (``KubeVersion.watch_list``). ``bookmark_timer``: the cacher's bookmark timer
        (~1 s), when a streaming list gets its first look (``_watch``)."""
        self.store = store if store is not None else Store(version=version or versions.DEFAULT)
        self.log = RequestLog()
        self.users: dict[str, User] = {ADMIN_TOKEN: User('admin', ADMIN_TOKEN, ADMIN)}
        self.bookmark_interval = bookmark_interval
        self.cache_refresh_interval = (bookmark_interval if cache_refresh_interval is None
                                       else cache_refresh_interval)
        self.min_request_timeout = min_request_timeout
        self.watch_list = self.store.version.watch_list if watch_list is None else watch_list
        self.bookmark_timer = bookmark_timer
        self._refresher: asyncio.Task[None] | None = None
        self.faults = Faults()
        self._watches: set[asyncio.Task[Any]] = set()

    def add_user(self, user: User) -> None:
        self.users[user.token] = user

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route('*', '/{tail:.*}', self._handle)
        app.on_startup.append(self._start_refresher)
        app.on_shutdown.append(self._close_watches)
        app.on_response_prepare.append(_audit_id)
        return app

    async def _close_watches(self, _: web.Application) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        for task in list(self._watches):
            task.cancel()

    async def _start_refresher(self, _: web.Application) -> None:
        if self.store.version.cacher_follows_the_cluster and self.cache_refresh_interval > 0:
            self._refresher = asyncio.create_task(self._refresh_watch_caches())

    async def _refresh_watch_caches(self) -> None:
        """The resource size estimator of kube-apiserver v1.34+: every so often it waits for the
        watch cache to be fresh, which asks etcd for a progress notification."""
        while True:
            await asyncio.sleep(self.cache_refresh_interval)
            self.store.refresh_watch_cache()

    # -- routing -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        call: dict[str, Any] = {'user': '', 'verb': '', 'group': '', 'resource': '', 'namespace': None}

        def log(status: int) -> None:
            self.log.add(method=request.method, path=request.path, query=request.query_string,
                         status=status, **call)

        try:
            user = self._authenticate(request)
            call['user'] = user.name
            route = _Route.parse(request.path)
            if route.discovery is not None:
                call['verb'] = 'get'
                response = self._discovery(route.discovery)
            else:
                resource = route.resource
                assert resource is not None
                verb = _verb(request, route)
                plural = resource.plural + (f'/{route.subresource}' if route.subresource else '')
                call.update(verb=verb, group=resource.group, resource=plural, namespace=route.namespace)
                if not user.allows(verb=verb, group=resource.group, resource=plural,
                                   namespace=route.namespace):
                    raise ApiError.forbidden(resource, user=user.name, verb=verb, plural=plural,
                                             group=resource.group, namespace=route.namespace,
                                             name=route.name)
                injected = self.faults.take_error(verb)
                if injected is not None:
                    raise ApiError.injected(injected, resource, user=user.name, verb=verb,
                                            namespace=route.namespace)
                if verb == 'watch':
                    selector = self._selector(request)
                    options = self._list_options(request, watch=True)
                    log(200)  # logged as it starts: a watch may last for minutes
                    if options.explicit:
                        return await self._watch_list(request, resource, route.namespace, selector, options)
                    return await self._watch(request, resource, route.namespace, selector)
                response = await self._serve(request, verb, route, resource)
            log(response.status)
            return response
        except ApiError as error:
            log(error.code)
            return _json(error.status(), status=error.code, headers=error.headers)

    def _authenticate(self, request: web.Request) -> User:
        scheme, _, token = request.headers.get('Authorization', '').partition(' ')
        user = self.users.get(token) if scheme.lower() == 'bearer' else None
        if user is None:
            raise ApiError.unauthorized()
        return user

    def _discovery(self, name: str) -> web.Response:
        if name == 'version':
            return _json(self.store.version.version_body())
        path = DISCOVERY / f'{name}.json'
        if not path.exists():
            raise ApiError.no_such_path()
        return web.Response(body=path.read_bytes(), content_type='application/json')

    async def _serve(self, request: web.Request, verb: str, route: '_Route',
                     resource: ResourceType) -> web.Response:
        store, namespace, name = self.store, route.namespace or '', route.name or ''
        agent = request.headers.get('User-Agent', 'unknown')
        manager = request.query.get('fieldManager') or agent.split('/')[0]
        if verb == 'list':
            self._list_options(request, watch=False)  # a 422 if it names sendInitialEvents
            if not request.query.get('resourceVersion') and not request.query.get('continue'):
                store.refresh_watch_cache(resource)  # a consistent LIST waits for a fresh watch cache
            return _json(store.list_objects(
                resource, route.namespace,
                selector=self._selector(request),
                resource_version=request.query.get('resourceVersion'),
                match=request.query.get('resourceVersionMatch'),
                limit=int(request.query['limit']) if request.query.get('limit') else None,
                continue_token=request.query.get('continue')))
        if route.subresource == 'scale':
            return await self._scale(request, verb, namespace, name, manager)
        if verb == 'get':
            return _json(store.get(resource, namespace, name))
        if verb == 'create':
            return _json(store.create(resource, namespace, await _body(request), manager=manager), 201)
        if verb == 'update':
            return _json(store.update(resource, namespace, name, await _body(request),
                                      manager=manager, subresource=route.subresource))
        if verb == 'patch':
            return _json(store.patch(resource, namespace, name, await _body(request),
                                     request.content_type, manager=manager, subresource=route.subresource))
        if verb == 'delete':
            options = await _body(request) if request.can_read_body else {}
            if 'propagationPolicy' in request.query:
                options['propagationPolicy'] = request.query['propagationPolicy']
            obj, gone = store.delete(resource, namespace, name, options)
            if not gone:
                return _json(obj)
            return _json({'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success',
                          'details': {'name': name, 'group': resource.group, 'kind': resource.plural,
                                      'uid': obj['metadata']['uid']}})
        raise ApiError.method_not_allowed()

    def _selector(self, request: web.Request) -> labels.Selector:
        """A LIST's or WATCH's ``labelSelector``: a bad one is a 400, before any stream
        (``v1.*/selector-refused.json``)."""
        try:
            return labels.parse(request.query.get('labelSelector'),
                                in_bytes=self.store.version.label_errors_in_bytes)
        except labels.SelectorError as error:
            raise ApiError.bad_request(str(error)) from None

    def _list_options(self, request: web.Request, *, watch: bool) -> watchlist.ListOptions:
        """The streaming-list options of a WATCH or LIST (``watchlist.parse``), or its 422."""
        return watchlist.parse(request.query, watch=watch, gate=self.watch_list,
                               knows_send_initial_events=self.store.version.knows_send_initial_events)

    async def _scale(self, request: web.Request, verb: str, namespace: str, name: str,
                     manager: str) -> web.Response:
        """``/scale`` of a Deployment: an ``autoscaling/v1`` Scale in and out (``v1.*/scale.json``)."""
        if verb == 'get':
            return _json(self.store.scale(namespace, name))
        if verb == 'update':
            return _json(self.store.update_scale(namespace, name, await _body(request), manager=manager))
        if verb == 'patch':
            return _json(self.store.patch_scale(namespace, name, await _body(request), request.content_type,
                                                manager=manager))
        raise ApiError.method_not_allowed()

    # -- watching ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _subscribed(self) -> Iterator[asyncio.Queue[Change]]:
        """The store's changes from now on, for one watch, counted among the open watches."""
        queue: asyncio.Queue[Change] = asyncio.Queue()
        unsubscribe = self.store.subscribe(queue.put_nowait)
        task = asyncio.current_task()
        if task is not None:
            self._watches.add(task)
        try:
            yield queue
        finally:
            unsubscribe()
            if task is not None:
                self._watches.discard(task)

    async def _watch(self, request: web.Request, resource: ResourceType,
                     namespace: str | None, selector: labels.Selector) -> web.StreamResponse:
        query = request.query
        bookmarks = query.get('allowWatchBookmarks') in ('true', '1')
        if not query.get('resourceVersion') and not self.store.version.unversioned_watch_bookmarks:
            # v1.28 sends a watch without a resourceVersion no BOOKMARK ever
            # (v1.*/watch-bookmarks-no-version.json: the cachers of the others send them).
            bookmarks = False
        timeout = (float(query['timeoutSeconds']) if query.get('timeoutSeconds')
                   else random.uniform(self.min_request_timeout, 2 * self.min_request_timeout))
        since = query.get('resourceVersion') or '0'

        if self.faults.take_empty():
            return await _empty(request)
        with self._subscribed() as queue:
            start = 0
            try:
                if self.faults.take_expiration():
                    raise ApiError.expired_watch(int(since) if since.isdigit() else 0, self.store.oldest)
                events = self._initial_events(resource, namespace, selector, since)
                # The watch's own version: a BOOKMARK needs a change after it ("0": from now on).
                start = self.store.resource_version if since == '0' else int(since)
                if since == '0' and bookmarks and self.store.version.initial_events_end_bookmark\
                        and self.watch_list:
                    # WatchList (v1.34+) gives such a watch sendInitialEvents=true: its ADDEDs end with
                    # a BOOKMARK so annotated (v1.*/watch-bookmarks-no-version.json).
                    end = kinds.bookmark(resource, str(start), version=self.store.version)
                    end['metadata']['annotations'] = {'k8s.io/initial-events-end': 'true'}
                    events.append({'type': 'BOOKMARK', 'object': end})
            except ApiError as error:
                events = [{'type': 'ERROR', 'object': error.status()}]
                timeout = 0  # the error is the whole stream

            response = web.StreamResponse(status=200, headers={'Content-Type': 'application/json'})
            sender = _Sender(request, response, self.faults)

            async def then() -> None:
                await self._stream(sender, queue, resource=resource, namespace=namespace,
                                   selector=selector, bookmarks=bookmarks, timeout=timeout, start=start)

            return await _answer(request, response, sender, [[event] for event in events],
                                 then=then if timeout else None)

    async def _watch_list(self, request: web.Request, resource: ResourceType, namespace: str | None,
                          selector: labels.Selector, options: watchlist.ListOptions) -> web.StreamResponse:
        """
        A watch that names ``sendInitialEvents`` (validated: ``watchlist.parse``), as the cacher
        serves it (``storage/cacher/cacher.go``, ``v1.3*/watchlist-*.json``).

        ``sendInitialEvents=true``: the watch cache first catches up with the cluster
        (``waitUntilWatchCacheFreshAndForceAllEvents``: a consistent read); then an ADDED per
        object, each at its own resourceVersion, in the order of their storage keys
        (``namespace/name``: ``wl-other/batch`` before ``wl/api``); with ``allowWatchBookmarks``
        then a BOOKMARK annotated ``k8s.io/initial-events-end`` at the cache's resourceVersion
        (``setInitialEventsEndBookmarkIfRequested``: a LIST's, ``list_before``), whatever the
        requested resourceVersion (``""``, ``"0"``, a LIST's: ``watchlist-accepted.json``); the
        watch goes on from there. Such a watch's first look for a BOOKMARK comes at the
        cacher's bookmark timer (``bookmark_timer``, ~1 s: ``cache_watcher.go``
        ``nextBookmarkTime`` schedules it "immediately" until one is received), so a change
        just after the initial events gets its BOOKMARK within a second (recorded 0.04 s /
        0.64 s after the MODIFIED); the later looks are a ``bookmark_interval`` apart, as for
        any watch. ``sendInitialEvents=false``: a watch from the requested resourceVersion, or
        from the cluster's (``getWatchCacheResourceVersion``): no initial events.

        gzip (``watchlist.accepts_gzip``, v1.37): the initial events in members of
        ``GZIP_INITIAL_EVENTS``, the initial-events-end BOOKMARK closing the last (``watch.go``
        flushes right after it), then one member per event (a quiet watch flushes each).
        A fault's cut or count applies to a member as to a line.
        """
        query = request.query
        timeout = (float(query['timeoutSeconds']) if query.get('timeoutSeconds')
                   else random.uniform(self.min_request_timeout, 2 * self.min_request_timeout))
        requested = query.get('resourceVersion', '')
        if requested and not requested.isdigit():
            # The cacher's ParseResourceVersion: an internal error, without a reason (watchlist-refused.json).
            raise ApiError(500, '', f'resourceVersion: Invalid value: "{requested}": strconv.ParseUint: '
                                    f'parsing "{requested}": invalid syntax')
        if self.faults.take_empty():
            return await _empty(request)
        compressed = (options.is_watch_list and self.store.version.watch_list_compression
                      and watchlist.accepts_gzip(request.headers.get('Accept-Encoding', '')))
        with self._subscribed() as queue:
            batches: list[list[Obj]] = []
            start = 0
            try:
                if self.faults.take_expiration():
                    raise ApiError.expired_watch(int(requested or 0), self.store.oldest)
                batches, start = self._watch_list_start(resource, namespace, selector, options, requested,
                                                        compressed=compressed)
            except ApiError as error:
                batches = [[{'type': 'ERROR', 'object': error.status()}]]
                timeout = 0

            headers = {'Content-Type': 'application/json'}
            if compressed:
                headers.update({'Content-Encoding': 'gzip', 'Vary': 'Accept-Encoding'})
            response = web.StreamResponse(status=200, headers=headers)
            sender = _Sender(request, response, self.faults, compressed=compressed)

            async def then() -> None:
                await self._stream(sender, queue, resource=resource, namespace=namespace, selector=selector,
                                   bookmarks=options.bookmarks, timeout=timeout, start=start,
                                   first_look=self.bookmark_timer if options.is_watch_list else None)

            return await _answer(request, response, sender, batches, then=then if timeout else None)

    def _watch_list_start(self, resource: ResourceType, namespace: str | None, selector: labels.Selector,
                          options: watchlist.ListOptions, requested: str, *,
                          compressed: bool) -> tuple[list[list[Obj]], int]:
        """A ``_watch_list``'s first events, in batches (gzip members), and the watch's resourceVersion."""
        if not options.send_initial_events:
            since = requested if requested not in ('', '0') else str(self.store.resource_version)
            replayed = self._initial_events(resource, namespace, selector, since)
            return [[event] for event in replayed], int(since)
        self.store.refresh_watch_cache(resource)
        start = self.store.resource_version
        objects = sorted((obj for obj in self.store.current(resource)
                          if (namespace is None or obj['metadata'].get('namespace') == namespace)
                          and selector.matches(obj)), key=_storage_key)
        added = [{'type': 'ADDED', 'object': obj} for obj in objects]
        size = GZIP_INITIAL_EVENTS if compressed else 1
        batches = [added[i:i + size] for i in range(0, len(added), size)]
        if options.bookmarks:
            end = kinds.bookmark(resource, str(start), version=self.store.version)
            end['metadata']['annotations'] = {watchlist.INITIAL_EVENTS_END: 'true'}
            if compressed and batches:
                batches[-1].append({'type': 'BOOKMARK', 'object': end})
            else:
                batches.append([{'type': 'BOOKMARK', 'object': end}])
        return batches, start

    def _initial_events(self, resource: ResourceType, namespace: str | None, selector: labels.Selector,
                        since: str) -> list[Obj]:
        if since == '0':
            return [{'type': 'ADDED', 'object': obj} for obj in self.store.current(resource)
                    if (namespace is None or obj['metadata'].get('namespace') == namespace)
                    and selector.matches(obj)]
        try:
            version = int(since)
        except ValueError:
            raise ApiError.bad_request(f'resourceVersion: Invalid value: "{since}"') from None
        return [event for change in self.store.changes_since(version)
                if (event := _event(change, resource, namespace, selector)) is not None]

    async def _stream(self, sender: '_Sender', queue: 'asyncio.Queue[Change]', *,
                      resource: ResourceType, namespace: str | None, selector: labels.Selector,
                      bookmarks: bool, timeout: float, start: int, first_look: float | None = None) -> None:
        """
        The watch's events, and its BOOKMARKs as kube-apiserver's cacher sends them.

        The cacher looks at a watch one bookmark period after it began, then one period after
        each look, and 2 s before its deadline; it sends a BOOKMARK with the last resourceVersion
        it processed for the resource type (any namespace, any labels; from v1.34 also one its
        watch cache caught up with, ``Store.watch_cache_version``), and only when that is
        newer than the watch's ``start`` (``v1.*/watch-bookmarks-*.json``); ``first_look``: a
        streaming list's first look comes this soon instead (``_watch_list``). ``last`` is that
        version as this stream has taken the changes off its queue, so that a BOOKMARK never
        overtakes an event still to be sent.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = self.store.last_change(resource)  # what the queue brings comes after it

        def next_look(now: float) -> float | None:
            look = min(now + self.bookmark_interval, deadline - PRE_TIMEOUT_BOOKMARK)
            return look if bookmarks and look >= now else None

        next_bookmark = next_look(loop.time())
        if first_look is not None and next_bookmark is not None:
            next_bookmark = min(next_bookmark, loop.time() + first_look)
        while (now := loop.time()) < deadline:
            # The timer's firing is the look: asyncio fires one up to its clock's resolution early,
            # so comparing the clock with the look again could wait on a clock that does not move.
            looking = next_bookmark is not None and next_bookmark < deadline
            wait = (next_bookmark if looking and next_bookmark is not None else deadline) - now
            try:
                change = await asyncio.wait_for(queue.get(), timeout=max(wait, 0))
            except TimeoutError:
                if looking:
                    # The queue is empty: every change so far is sent, and a refresh is not ahead of them.
                    last = max(last, self.store.watch_cache_version(resource))
                    if last > start:
                        await sender.send(_line({'type': 'BOOKMARK',
                                                 'object': kinds.bookmark(resource, str(last),
                                                                         version=self.store.version)}))
                    next_bookmark = next_look(loop.time())
                continue
            if change.resource is resource:
                last = max(last, change.resource_version)
            event = _event(change, resource, namespace, selector)
            if event is not None:
                await sender.send(_line(event))


async def _answer(request: web.Request, response: web.StreamResponse, sender: '_Sender',
                  batches: list[list[Obj]], *,
                  then: Callable[[], Awaitable[None]] | None) -> web.StreamResponse:
    """A watch's answer: 200, the first events (a chunk, or a gzip member, per batch), then the stream."""
    response.enable_chunked_encoding()
    try:
        await sender.unstalled()  # a stalled server does not even answer
        await response.prepare(request)
        if (odd := sender.odd_line()) is not None:
            await response.write(odd)
        for batch in batches:
            await sender.send(*map(_line, batch))
        if then is not None:
            await then()
        await response.write_eof()
    except _StreamCut:
        if sender.cut_cleanly:
            await response.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


async def _empty(request: web.Request) -> web.StreamResponse:
    """A watch answered 200 that ends before its first event (``Faults.empty_watch``)."""
    response = web.StreamResponse(status=200, headers={'Content-Type': 'application/json'})
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write_eof()
    return response


async def _audit_id(_: web.Request, response: web.StreamResponse) -> None:
    response.headers['Audit-Id'] = str(uuid.uuid4())


class _StreamCut(Exception):
    """A fault ended the watch stream."""


class _Sender:
    """
    Writes watch lines, one per chunk, and applies an armed cut.

    A cut armed while this stream is open applies to it too: the stream claims it
    at its next line and is cut after ``after`` more lines.
    """

    def __init__(self, request: web.Request, response: web.StreamResponse, faults: Faults, *,
                 compressed: bool = False) -> None:
        self._compressed = compressed
        self._request = request
        self._response = response
        self._faults = faults
        self._cut: WatchCut | None = None
        self._until_cut = 0

    def odd_line(self) -> bytes | None:
        """
        A line armed to open the stream (``Faults.odd_line``), sent before any event: in a gzip
        body, a gzip member of its own (raw, no client could read the body at all).
        """
        odd = self._faults.take_odd_line()
        return watchlist.gzip_member([odd]) if odd is not None and self._compressed else odd

    async def unstalled(self) -> None:
        while self._faults.stalled:
            await asyncio.sleep(STALL_POLL)

    async def send(self, *lines: bytes) -> None:
        """The lines, a chunk each; gzipped: one gzip member of them all, one chunk (a "line" to a fault)."""
        if self._compressed:
            await self._send(watchlist.gzip_member(list(lines)))
            return
        for line in lines:
            await self._send(line)

    async def _send(self, line: bytes) -> None:
        await self.unstalled()
        if self._cut is None and (cut := self._faults.take_cut()) is not None:
            self._cut, self._until_cut = cut, cut.after
        if self._cut is not None:
            if self._until_cut <= 0:
                if self._cut.how in (Cut.MID_LINE, Cut.HALF_LINE):
                    await self._response.write(line[: len(line) // 2])
                if self._cut.how is Cut.MID_CHAR:
                    half = line[: len(line) // 2] if self._compressed else _to_mid_char(line)
                    await self._response.write(half)
                if self._cut.how in (Cut.MID_LINE, Cut.RESET) and self._request.transport is not None:
                    self._request.transport.abort()
                raise _StreamCut()
            self._until_cut -= 1
        await self._response.write(line)

    @property
    def cut_cleanly(self) -> bool:
        return self._cut is not None and self._cut.how in (Cut.CLEAN, Cut.HALF_LINE, Cut.MID_CHAR)


def _to_mid_char(line: bytes) -> bytes:
    """
    The line as a real server writes it (UTF-8, not ``\\u`` escapes), up to the middle of its
    first multi-byte character; half the line if it has none.
    """
    raw = json.dumps(json.loads(line), separators=(',', ':'), ensure_ascii=False).encode()
    first = next((i for i, byte in enumerate(raw) if byte >= 0x80), None)
    return raw[: first + 1] if first is not None else line[: len(line) // 2]


def _storage_key(obj: Obj) -> str:
    """Where etcd keeps an object, which orders a watch cache's objects: ``namespace/name``."""
    metadata = obj['metadata']
    name: str = metadata['name']
    return f'{metadata["namespace"]}/{name}' if metadata.get('namespace') else name


def _line(event: Obj) -> bytes:
    return json.dumps(event, separators=(',', ':')).encode() + b'\n'


def _event(change: Change, resource: ResourceType, namespace: str | None,
           selector: labels.Selector) -> Obj | None:
    """
    The watch event a filtered watch sees for a change, as the cacher's ``convertToWatchEvent``
    (and etcd3's ``transform``) make it: an object that starts matching is ADDED with its new
    state; one that stops matching is DELETED with its *previous* state (the labels that did
    match) at the change's resourceVersion (``v1.*/watch-selector.json``).
    """
    if change.resource is not resource or (namespace is not None and change.key[0] != namespace):
        return None
    previous = change.previous if change.previous is not None and selector.matches(change.previous) else None
    if change.type != 'DELETED' and selector.matches(change.obj):
        return {'type': 'ADDED' if previous is None else 'MODIFIED', 'object': change.obj}
    if previous is None:
        return None
    gone = copy.deepcopy(previous)  # a real DELETE's event is this too
    gone['metadata']['resourceVersion'] = str(change.resource_version)
    return {'type': 'DELETED', 'object': gone}


async def _body(request: web.Request) -> Obj:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError.bad_request('the request body is not valid JSON') from None
    if not isinstance(body, (dict, list)):
        raise ApiError.bad_request('the request body is not a JSON object')
    return body  # type: ignore[return-value]  # a list only for json-patch


def _verb(request: web.Request, route: '_Route') -> str:
    method = request.method
    if method == 'GET':
        if route.name is None:
            return 'watch' if request.query.get('watch') in ('true', '1') else 'list'
        return 'get'
    if route.name is None:
        return {'POST': 'create', 'DELETE': 'deletecollection'}.get(method, 'unknown')
    return {'PUT': 'update', 'PATCH': 'patch', 'DELETE': 'delete'}.get(method, 'unknown')


class _Route:
    """A parsed API path: discovery, or a resource with optional namespace, name and subresource."""

    def __init__(self) -> None:
        self.discovery: str | None = None
        self.resource: ResourceType | None = None
        self.namespace: str | None = None
        self.name: str | None = None
        self.subresource: str | None = None

    @classmethod
    def parse(cls, path: str) -> '_Route':
        route = cls()
        parts = [urllib.parse.unquote(p) for p in path.strip('/').split('/')]
        if parts == ['version']:
            route.discovery = 'version'
            return route
        if parts[:1] == ['api']:
            group, version, rest = '', parts[1] if len(parts) > 1 else None, parts[2:]
        elif parts[:1] == ['apis']:
            group = parts[1] if len(parts) > 1 else ''
            version, rest = (parts[2] if len(parts) > 2 else None), parts[3:]
        else:
            raise ApiError.no_such_path()
        if not rest:
            route.discovery = '-'.join(p for p in (parts[0], group, version) if p)
            return route
        # /namespaces/{ns}/{plural}/... is namespaced; /namespaces/{name}[/status] is a Namespace.
        if rest[0] == 'namespaces' and len(rest) >= 3 and rest[2] not in ('status', 'finalize'):
            route.namespace, rest = rest[1], rest[2:]
        resource = kinds.find(group, version or '', rest[0])
        if resource is None or len(rest) > 3 or (route.namespace is not None and not resource.namespaced):
            raise ApiError.no_such_path()
        route.resource = resource
        route.name = rest[1] if len(rest) > 1 else None
        route.subresource = rest[2] if len(rest) > 2 else None
        if route.subresource == 'scale':
            if resource is not kinds.DEPLOYMENTS:
                raise ApiError.no_such_path()
        elif route.subresource not in (None, 'status') or (route.subresource and not resource.has_status):
            raise ApiError.no_such_path()
        return route
