"""
Recording what a real kube-apiserver answers to a streaming list (KEP-3157, ``sendInitialEvents``).

    python -m tests.emulator.record_watchlist --kubeconfig $REALK8S_DIR/kubeconfig \
        --out tests/emulator/recordings/v1.37
    python -m tests.emulator.record_watchlist --kubeconfig $GATE_OFF_DIR/kubeconfig \
        --out tests/emulator/recordings/v1.37 --gate-off     # REALK8S_FEATURE_GATES=WatchList=false

The companion of ``record.py`` (same server, same format: one request and its
answer, the stream's lines exactly as sent). What it asks, and where the
apiserver's source says what to expect (``k8s.io/apiserver`` and
``k8s.io/apimachinery`` of the server's own version, as ``tests/cluster/build.sh``
builds it):

- ``watchlist-cluster``, ``-namespace``, ``-selector``: the request a streaming
  client makes, ``watch=true&sendInitialEvents=true&allowWatchBookmarks=true&
  resourceVersionMatch=NotOlderThan&resourceVersion=`` (all namespaces, one
  namespace, one namespace with a labelSelector), started together over a few
  quiet Deployments; once each has its BOOKMARK annotated
  ``k8s.io/initial-events-end`` (``storage/cacher/cacher.go``
  ``setInitialEventsEndBookmarkIfRequested``: at the watch cache's resourceVersion
  once it is as fresh as etcd's current one), one label is changed and each watch
  goes on until it has the MODIFIED. ``list_before``: a LIST's resourceVersion just
  before, to compare with the BOOKMARK's.
- ``watchlist-accepted``: ``exchanges`` of requests the validation lets through,
  each with ``timeoutSeconds`` so the server ends them: without
  ``allowWatchBookmarks`` (``isListWatchRequest`` in ``endpoints/handlers/get.go``
  wants both: ADDEDs, no BOOKMARK), ``sendInitialEvents=false`` (a watch from etcd's
  current resourceVersion), from ``resourceVersion=0`` and from a LIST's.
- ``watchlist-refused``: ``exchanges`` of requests ``ValidateListOptions``
  (``apis/meta/internalversion/validation/validation.go``) refuses: HTTP 422 with
  the ``ListOptions`` causes, or a 400 for a value that does not parse.
- ``watchlist-gzip``: ``Accept-Encoding: gzip``; ``endpoints/handlers/watch.go``
  (v1.37, ``WatchListCompression``) wraps a streaming list's writer in a
  ``perFlushGzipWriter``: a gzip member per flush (the server flushes when its
  event channel is empty), with no size threshold (the 128 KiB
  ``defaultGzipThresholdBytes`` of ``responsewriters/writers.go`` is for other
  responses). With ``GZIP_DEPLOYMENTS`` Deployments, more than a LIST needs to be
  compressed (recorded too, its headers and size). Each stream is kept raw
  (``body_base64``, the de-chunked bytes as read) and decoded member by member.
- ``--gate-off``: ``watchlist-gate-off`` only, the same requests against a server
  started with ``WatchList=false``.

Nothing is normalised or scrubbed (throwaway clusters).
"""
import base64
import json
import pathlib
import sys
import threading
import time
import urllib.parse
import zlib
from typing import Any

from tests.emulator.record import Obj, Server, command_line
from tests.emulator.record_bookmarks import TimedWatch

NAMESPACE = 'wl'
OTHER_NAMESPACE = 'wl-other'
GZIP_NAMESPACE = 'wl-gz'
GZIP_DEPLOYMENTS = 120  # ~1.3 KB each: a LIST of them is over the 128 KiB gzip threshold
# Created in this order, not the alphabetical one, to see which order the initial ADDEDs take.
DEPLOYMENTS = [(NAMESPACE, 'web', {'tier': 'front'}), (NAMESPACE, 'api', {'tier': 'back'}),
               (NAMESPACE, 'cache', {'tier': 'front'}), (OTHER_NAMESPACE, 'batch', {'tier': 'back'})]
STREAMING = 'watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan'
SELECTOR = 'tier=front'
RESPONSE_HEADERS = ('Audit-Id', 'Content-Type', 'Content-Encoding', 'Transfer-Encoding', 'Vary', 'Warning',
                    'Content-Length')
INITIAL_END = 'k8s.io/initial-events-end'
MERGE_PATCH = 'application/merge-patch+json'


def deployment(name: str, labels: dict[str, str]) -> Obj:
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment',
            'metadata': {'name': name, 'labels': {'app': name, **labels}},
            'spec': {'replicas': 0, 'selector': {'matchLabels': {'app': name}},
                     'template': {'metadata': {'labels': {'app': name}},
                                  'spec': {'containers': [{'name': 'c', 'image': 'nginx:1.25'}]}}}}


def base(namespace: str | None) -> str:
    return f'/apis/apps/v1/namespaces/{namespace}/deployments' if namespace else '/apis/apps/v1/deployments'


def settled(server: Server, namespaces: list[str], count: int) -> None:
    """Until the deployment controller has observed every Deployment and written nothing for 5 s."""
    deadline = time.monotonic() + 180
    last, since = '', time.monotonic()
    while time.monotonic() < deadline:
        items = [item for namespace in namespaces for item in server.get(base(namespace))['items']]
        state = ','.join(sorted(item['metadata']['resourceVersion'] for item in items))
        observed = all(item.get('status', {}).get('observedGeneration') == item['metadata']['generation']
                       for item in items)
        if state != last:
            last, since = state, time.monotonic()
        elif len(items) == count and observed and time.monotonic() - since >= 5:
            return
        time.sleep(0.5)
    raise TimeoutError('the deployment controller did not settle')


def ensure_namespaces(server: Server, *names: str) -> None:
    for name in names:
        body = {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': name}}
        assert server.exchange('POST', '/api/v1/namespaces', body)['response']['status'] in (201, 409)


def types(lines: list[str]) -> list[str]:
    return [json.loads(line)['type'] for line in lines]


def wait_until(predicate: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def has_initial_end(watch: TimedWatch) -> bool:
    with watch._lock:
        lines = list(watch.lines)
    return any(INITIAL_END in json.loads(line)['object']['metadata'].get('annotations', {}) for line in lines)


def stream_exchange(server: Server, path: str, note: str, *, headers: dict[str, str] | None = None,
                    timeout: float = 30) -> Obj:
    """One request read to its end (the server ends it: ``timeoutSeconds``), raw bytes and lines."""
    connection = server.connect(timeout=timeout)
    sent = {**server.headers(), **(headers or {})}
    try:
        connection.request('GET', path, headers=sent)
        response = connection.getresponse()
        reads: list[bytes] = []
        while chunk := response.read1(1 << 16):
            reads.append(chunk)
        raw = b''.join(reads)
        kept = {name: response.headers[name] for name in RESPONSE_HEADERS if response.headers.get(name)}
        request: Obj = {'method': 'GET', 'path': path}
        if headers:
            request['headers'] = headers
        answer: Obj = {'status': response.status, 'headers': kept}
        if response.status != 200:
            answer['body'] = json.loads(raw)
        elif response.headers.get('Content-Encoding') == 'gzip':
            per_member = [(len(packed), text.decode().splitlines(keepends=True))
                          for packed, text in gzip_members(raw)]
            answer.update(body_base64=base64.b64encode(raw).decode(), body_bytes=len(raw),
                          gzip_members=[size for size, _ in per_member],
                          lines_per_member=[len(lines) for _, lines in per_member],
                          stream_lines=[line for _, lines in per_member for line in lines])
        else:
            answer.update(body_bytes=len(raw), stream_lines=raw.decode().splitlines(keepends=True))
        return {'note': note, 'request': request, 'response': answer}
    finally:
        connection.close()


def gzip_members(raw: bytes) -> list[tuple[bytes, bytes]]:
    """The gzip members of a body, one after the other: each member's compressed bytes and its text."""
    members = []
    rest = raw
    while rest:
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        text = decoder.decompress(rest) + decoder.flush()
        assert decoder.eof, 'a truncated gzip member'
        used = len(rest) - len(decoder.unused_data)
        members.append((rest[:used], text))
        rest = decoder.unused_data
    return members


def plain_exchange(server: Server, path: str, note: str, *, headers: dict[str, str] | None = None) -> Obj:
    """A request whose answer is read whole; the body kept as JSON (a 4xx Status)."""
    exchange = server.exchange('GET', path) if not headers else None
    if exchange is None:
        connection = server.connect()
        try:
            connection.request('GET', path, headers={**server.headers(), **headers})  # type: ignore[dict-item]
            response = connection.getresponse()
            raw = response.read()
            kept = {name: response.headers[name] for name in RESPONSE_HEADERS if response.headers.get(name)}
            exchange = {'request': {'method': 'GET', 'path': path, 'headers': headers},
                        'response': {'status': response.status, 'headers': kept, 'body_bytes': len(raw)}}
        finally:
            connection.close()
    return {'note': note, **exchange}


class Saver:
    def __init__(self, server: Server, out: pathlib.Path) -> None:
        self.version = server.get('/version')
        self.out = out
        out.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, note: str, data: Obj) -> None:
        (self.out / f'{name}.json').write_text(json.dumps({'note': note, 'server_version': self.version,
                                                           **data}, indent=1) + '\n')
        print(f'{self.out / name}.json', file=sys.stderr)


def summary(exchange: Obj) -> str:
    response = exchange['response']
    if 'stream_lines' in response:
        return f'{response["status"]} {types(response["stream_lines"])} {response["headers"]}'
    return f'{response["status"]} {json.dumps(response.get("body"))[:300]}'


def record_streams(server: Server, save: Saver) -> None:
    ensure_namespaces(server, NAMESPACE, OTHER_NAMESPACE)
    for namespace, name, labels in DEPLOYMENTS:
        status = server.exchange('POST', base(namespace), deployment(name, labels))['response']['status']
        assert status in (201, 409), status
    settled(server, [NAMESPACE, OTHER_NAMESPACE], len(DEPLOYMENTS))
    since = server.get(base(None))['metadata']['resourceVersion']
    selector = urllib.parse.quote(SELECTOR)
    watches = {
        'watchlist-cluster': (TimedWatch(server, f'{base(None)}?{STREAMING}&resourceVersion='),
                              'all namespaces'),
        'watchlist-namespace': (TimedWatch(server, f'{base(NAMESPACE)}?{STREAMING}&resourceVersion='),
                                f'namespace {NAMESPACE}'),
        'watchlist-selector': (TimedWatch(server, f'{base(NAMESPACE)}?{STREAMING}&resourceVersion='
                                                  f'&labelSelector={selector}'),
                               f'namespace {NAMESPACE}, labelSelector={SELECTOR}'),
    }
    for name, (watch, _) in watches.items():
        wait_until(lambda watch=watch: has_initial_end(watch),
                   f'{name}: no initial-events-end BOOKMARK')
    list_after_initial = server.get(base(None))['metadata']['resourceVersion']
    label = {'metadata': {'labels': {'note': 'changed'}}}
    exchange = server.exchange('PATCH', f'{base(NAMESPACE)}/web', label, content_type=MERGE_PATCH)
    assert exchange['response']['status'] == 200, exchange
    change_rv = exchange['response']['body']['metadata']['resourceVersion']
    changed = time.monotonic()
    for name, (watch, _) in watches.items():
        wait_until(lambda watch=watch: any(t == 'MODIFIED' for t in types(list(watch.lines))),
                   f'{name}: no MODIFIED after the change')
    time.sleep(max(0.0, changed + 1 - time.monotonic()))  # anything that follows it at once, too
    for name, (watch, what) in watches.items():
        watch.close()
        change = {'at': round(changed - watch.started, 3), 'request': exchange['request'],
                  'status': exchange['response']['status'], 'resourceVersion': change_rv}
        note = (f'a streaming list ({what}) over {len(DEPLOYMENTS)} quiet Deployments (created in the order '
                f'{[n for _, n, _ in DEPLOYMENTS]}), then one label change ({NAMESPACE}/web, "change") once '
                'every streaming list had its initial-events-end BOOKMARK; closed by the recorder a second '
                'after the MODIFIED; "list_before": a LIST\'s resourceVersion just before the request, '
                '"list_after_initial": one once the BOOKMARKs had come')
        data = watch.recording(note, list_before=since, list_after_initial=list_after_initial, change=change)
        data['deployments'] = [{'namespace': ns, 'name': n, 'labels': tags} for ns, n, tags in DEPLOYMENTS]
        save(name, data.pop('note'), data)
        print(f'  {types(data["response"]["stream_lines"])} list_before {since} change {change_rv}',
              file=sys.stderr)


def refused_requests(list_rv: str) -> list[tuple[str, str]]:
    ns = base(NAMESPACE)
    return [
        (f'{ns}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersion=',
         'sendInitialEvents without resourceVersionMatch'),
        (f'{ns}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=Exact'
         f'&resourceVersion={list_rv}', 'resourceVersionMatch=Exact (from a LIST\'s resourceVersion)'),
        (f'{ns}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=Exact'
         '&resourceVersion=', 'resourceVersionMatch=Exact, resourceVersion empty'),
        (f'{ns}?watch=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&resourceVersion=',
         'resourceVersionMatch=NotOlderThan without sendInitialEvents'),
        (f'{ns}?watch=true&sendInitialEvents=false&allowWatchBookmarks=true&resourceVersion=',
         'sendInitialEvents=false without resourceVersionMatch'),
        (f'{ns}?sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion={list_rv}',
         'sendInitialEvents on a LIST (no watch)'),
        (f'{ns}?{STREAMING}&resourceVersion=&continue=abc', 'a streaming list with a continue token'),
        (f'{ns}?watch=true&sendInitialEvents=yes&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan'
         '&resourceVersion=', 'sendInitialEvents=yes (not a bool)'),
        (f'{ns}?{STREAMING}&resourceVersion=abc', 'a streaming list from resourceVersion=abc'),
    ]


def accepted_requests(list_rv: str) -> list[tuple[str, str]]:
    ns = base(NAMESPACE)
    timeout = 'timeoutSeconds=3'
    return [
        (f'{ns}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=&{timeout}',
         'sendInitialEvents=true without allowWatchBookmarks'),
        (f'{ns}?watch=true&sendInitialEvents=false&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan'
         f'&resourceVersion=&{timeout}', 'sendInitialEvents=false, resourceVersion empty'),
        (f'{ns}?{STREAMING}&resourceVersion=0&{timeout}', 'a streaming list from resourceVersion=0'),
        (f'{ns}?{STREAMING}&resourceVersion={list_rv}&{timeout}',
         'a streaming list from a LIST\'s resourceVersion'),
        (f'{ns}?watch=true&sendInitialEvents=true&allowWatchBookmarks=false&resourceVersionMatch=NotOlderThan'
         f'&resourceVersion=&{timeout}', 'allowWatchBookmarks=false'),
        (f'{ns}?{STREAMING}&resourceVersion=&{timeout}', 'the streaming list with timeoutSeconds'),
        (f'{ns}?watch=true&allowWatchBookmarks=true&{timeout}',
         'a watch without resourceVersion nor sendInitialEvents (the WatchList gate defaults it)'),
    ]


def record_validation(server: Server, save: Saver) -> None:
    list_rv = server.get(base(NAMESPACE))['metadata']['resourceVersion']
    # timeoutSeconds: should one be served after all, the server ends it.
    refused = [stream_exchange(server, f'{path}&timeoutSeconds=3', note)
               for path, note in refused_requests(list_rv)]
    for exchange in refused:
        print(f'  {exchange["note"]}: {summary(exchange)}', file=sys.stderr)
    save('watchlist-refused', 'requests the validation of ListOptions refuses, each with its answer; '
         f'"list_rv": a LIST\'s resourceVersion of namespace {NAMESPACE} just before',
         {'list_rv': list_rv, 'exchanges': refused})
    accepted = []
    for path, note in accepted_requests(list_rv):
        accepted.append(stream_exchange(server, path, note))
        print(f'  {note}: {summary(accepted[-1])}', file=sys.stderr)
    names = [n for ns, n, _ in DEPLOYMENTS if ns == NAMESPACE]
    save('watchlist-accepted', 'streaming-list variants the server accepts, each read until the server ended '
         f'it (timeoutSeconds); namespace {NAMESPACE} holds {names}, '
         '"list_rv": a LIST\'s resourceVersion just before', {'list_rv': list_rv, 'exchanges': accepted})


def record_gzip(server: Server, save: Saver) -> None:
    ensure_namespaces(server, GZIP_NAMESPACE)
    present = {item['metadata']['name'] for item in server.get(base(GZIP_NAMESPACE))['items']}
    for index in range(GZIP_DEPLOYMENTS):
        name = f'd{index:03}'
        if name not in present:
            body = deployment(name, {'tier': 'gz'})
            body['metadata']['annotations'] = {'example.com/padding': 'p' * 600}
            assert server.exchange('POST', base(GZIP_NAMESPACE), body)['response']['status'] == 201
    settled(server, [GZIP_NAMESPACE], GZIP_DEPLOYMENTS)
    ns = base(GZIP_NAMESPACE)
    gzip = {'Accept-Encoding': 'gzip'}
    list_rv = server.get(ns)['metadata']['resourceVersion']
    exchanges = [plain_exchange(server, ns, 'a LIST of them with Accept-Encoding: gzip (its body\'s size '
                                'only)', headers=gzip)]

    # The streaming list, with a change 2 s in, so that an event after the BOOKMARK is recorded too.
    def change() -> None:
        time.sleep(2)
        patched = server.exchange('PATCH', f'{ns}/d000', {'metadata': {'labels': {'note': 'changed'}}},
                                  content_type='application/merge-patch+json')
        assert patched['response']['status'] == 200, patched
    writer = threading.Thread(target=change)
    writer.start()
    exchanges.append(stream_exchange(server, f'{ns}?{STREAMING}&resourceVersion=&timeoutSeconds=5',
                                     'the streaming list, Accept-Encoding: gzip; one label changed 2 s in',
                                     headers=gzip))
    writer.join()
    for path, note, headers in [
        (f'{ns}?{STREAMING}&resourceVersion=&timeoutSeconds=3',
         'the streaming list without Accept-Encoding (http.client sends "identity")', None),
        (f'{ns}?{STREAMING}&resourceVersion=&timeoutSeconds=3', 'the streaming list, Accept-Encoding: gzip, '
         'deflate (what aiohttp sends)', {'Accept-Encoding': 'gzip, deflate'}),
        (f'{ns}?{STREAMING}&resourceVersion=&timeoutSeconds=3', 'the streaming list, Accept-Encoding: '
         'gzip;q=0', {'Accept-Encoding': 'gzip;q=0'}),
        (f'{ns}?watch=true&allowWatchBookmarks=true&timeoutSeconds=3', 'a watch without resourceVersion '
         '(defaulted to sendInitialEvents=true by the WatchList gate), Accept-Encoding: gzip', gzip),
        (f'{ns}?watch=true&timeoutSeconds=3', 'a watch without resourceVersion nor allowWatchBookmarks, '
         'Accept-Encoding: gzip', gzip),
        (f'{ns}?watch=true&allowWatchBookmarks=true&resourceVersion={list_rv}&timeoutSeconds=3',
         'a watch from a LIST\'s resourceVersion, Accept-Encoding: gzip', gzip),
    ]:
        exchanges.append(stream_exchange(server, path, note, headers=headers))
    for exchange in exchanges:
        response = exchange['response']
        print(f'  {exchange["note"]}: {response["status"]} {response["headers"]} '
              f'{response.get("body_bytes")} members {response.get("gzip_members", "-")!s}', file=sys.stderr)
    save('watchlist-gzip', f'{GZIP_DEPLOYMENTS} Deployments in {GZIP_NAMESPACE} (0 replicas, a 600-byte '
         'annotation each), requests with and without Accept-Encoding. The compressed streaming list with a '
         'change is kept raw (body_base64: the de-chunked bytes) and decoded member by member (gzip_members: '
         'each member\'s compressed size; lines_per_member; stream_lines); of the others, only '
         '"event_types" (per member, if compressed) and the sizes are kept',
         {'list_rv': list_rv, 'exchanges': [exchanges[0], exchanges[1], *map(slim, exchanges[2:])]})


def slim(exchange: Obj) -> Obj:
    """An exchange without its lines (120 Deployments each time): event types, sizes, members."""
    response = dict(exchange['response'])
    if 'lines_per_member' in response:
        lines = iter(response['stream_lines'])
        response['event_types'] = [types([next(lines) for _ in range(count)])
                                   for count in response['lines_per_member']]
        response.pop('body_base64')
    elif 'stream_lines' in response:
        response['event_types'] = types(response['stream_lines'])
    response.pop('stream_lines', None)
    return {**exchange, 'response': response}


def record_gate_off(server: Server, save: Saver) -> None:
    ensure_namespaces(server, NAMESPACE)
    created = server.exchange('POST', base(NAMESPACE), deployment('web', {'tier': 'front'}))
    assert created['response']['status'] in (201, 409)
    settled(server, [NAMESPACE], 1)
    list_rv = server.get(base(NAMESPACE))['metadata']['resourceVersion']
    ns = base(NAMESPACE)
    exchanges = [plain_exchange(server, f'{ns}?{STREAMING}&resourceVersion=', 'the streaming list'),
                 plain_exchange(server, f'{base(None)}?{STREAMING}&resourceVersion=', 'the streaming list, '
                                'all namespaces'),
                 plain_exchange(server, f'{ns}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true'
                                '&resourceVersion=', 'sendInitialEvents without resourceVersionMatch'),
                 plain_exchange(server, f'{ns}?watch=true&sendInitialEvents=false&allowWatchBookmarks=true'
                                '&resourceVersionMatch=NotOlderThan&resourceVersion=',
                                'sendInitialEvents=false')]
    for path, note in [
        (f'{ns}?watch=true&allowWatchBookmarks=true&timeoutSeconds=3', 'a watch without resourceVersion'),
        (f'{ns}?watch=true&allowWatchBookmarks=true&resourceVersion=0&timeoutSeconds=3', 'a watch from "0"'),
    ]:
        exchanges.append(stream_exchange(server, path, note, headers={'Accept-Encoding': 'gzip'}))
    for exchange in exchanges:
        print(f'  {exchange["note"]}: {summary(exchange)}', file=sys.stderr)
    save('watchlist-gate-off', 'a server started with --feature-gates=WatchList=false: the streaming list '
         f'and its neighbours; namespace {NAMESPACE} holds one Deployment "web"', {'list_rv': list_rv,
                                                                             'exchanges': exchanges})


def main(argv: list[str] | None = None) -> None:
    parser = command_line(module='tests.emulator.record_watchlist', doc=__doc__)
    parser.add_argument('--gate-off', action='store_true', help='the server runs with WatchList=false')
    parser.add_argument('--only', choices=['streams', 'validation', 'gzip'], action='append')
    args = parser.parse_args(argv)
    server = Server(args.kubeconfig)
    save = Saver(server, args.out)
    if args.gate_off:
        record_gate_off(server, save)
        return
    only = args.only or ['streams', 'validation', 'gzip']
    if 'streams' in only:
        record_streams(server, save)
    if 'validation' in only:
        record_validation(server, save)
    if 'gzip' in only:
        record_gzip(server, save)


if __name__ == '__main__':
    main()
