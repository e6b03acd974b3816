"""
Recording when a real kube-apiserver sends a watch its BOOKMARKs.

    python -m tests.emulator.record_bookmarks --kubeconfig /tmp/rk/kubeconfig \
        --out tests/emulator/recordings/v1.28

The companion of ``record.py`` (same server, same format: one watch and its
stream per file), for one question the everyday session cannot answer because
it never stays quiet: does a watch with ``allowWatchBookmarks=true`` get
BOOKMARKs while nothing changes? The apiserver's cacher sends a bookmark only
with the last resourceVersion it processed for the resource, and only to a
watch that started before it; so this keeps the Deployments quiet for
``QUIET_SECONDS``, makes one change (a label, which the deployment controller
does not answer with a status write), and keeps watching ``AFTER_SECONDS``
more. Four watches start together from the same LIST's resourceVersion:

- ``watch-bookmarks-cluster``: all namespaces, no ``timeoutSeconds``;
- ``watch-bookmarks-namespace``: the namespace of the change, ``timeoutSeconds``
  (``TIMEOUT_SECONDS``), to see the bookmark sent 2 s before the deadline;
- ``watch-bookmarks-other-namespace``: a namespace where nothing changes, to see
  whether a change elsewhere brings its watch a bookmark;
- ``watch-bookmarks-no-version``: all namespaces without a resourceVersion
  (synthetic ADDED first).

Each line is kept exactly as sent, with when it arrived (``line_times``:
seconds after the watch request was sent), and ``change`` says when the one
write was made and what resourceVersion it got. Nothing is normalised.
"""
import contextlib
import json
import pathlib
import socket
import sys
import threading
import time
from typing import Any

from tests.emulator.record import RESPONSE_HEADERS, Obj, Server, command_line

NAMESPACE = 'bm'
OTHER_NAMESPACE = 'bm-other'
NAME = 'quiet'
QUIET_SECONDS = 70  # longer than the cacher's bookmark period (1 min): its first round finds nothing
AFTER_SECONDS = 90  # after the change: past the next round and the namespaced watch's deadline
TIMEOUT_SECONDS = 150  # the namespaced watch's timeoutSeconds: its bookmark comes at 148 s
SOCKET_TIMEOUT = QUIET_SECONDS + AFTER_SECONDS + 60


class TimedWatch:
    """A watch read line by line in a thread, each line as sent and when it arrived."""

    def __init__(self, server: Server, path: str) -> None:
        self.request: Obj = {'method': 'GET', 'path': path}
        self.started = time.monotonic()
        self.started_at = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
        self._connection, self._http = server.stream(path, timeout=SOCKET_TIMEOUT)
        self.status = self._http.status
        self.headers = self._http.headers
        self.lines: list[str] = []
        self.times: list[float] = []
        self.ended: float | None = None  # when the server ended the stream, if it did
        self._closing = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while line := self._http.readline():
                with self._lock:
                    self.lines.append(line.decode())
                    self.times.append(round(time.monotonic() - self.started, 3))
            if not self._closing:
                self.ended = round(time.monotonic() - self.started, 3)
        except (OSError, ValueError):
            if not self._closing:
                raise

    def close(self) -> None:
        """Stop reading (the client going away); a stream the server ended is left as it is."""
        self._closing = True
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        self._connection.close()

    def recording(self, note: str, **extra: Any) -> Obj:
        kept = {name: self.headers[name] for name in RESPONSE_HEADERS if self.headers.get(name) is not None}
        with self._lock:
            lines, times = list(self.lines), list(self.times)
        timing: Obj = {'started_at': self.started_at, 'line_times': times,
                       'ended_by_server_at': self.ended}
        return {'note': note, 'request': self.request, **extra, **timing,
                'response': {'status': self.status, 'headers': kept, 'stream_lines': lines}}


def settled(server: Server, base: str) -> None:
    """Until the deployment controller has observed the Deployment and written nothing for 5 s."""
    deadline = time.monotonic() + 60
    last, since = '', time.monotonic()
    while time.monotonic() < deadline:
        obj = server.get(f'{base}/{NAME}')
        rv = obj['metadata']['resourceVersion']
        if rv != last:
            last, since = rv, time.monotonic()
        elif (obj.get('status', {}).get('observedGeneration') == obj['metadata']['generation']
              and time.monotonic() - since >= 5):
            return
        time.sleep(0.5)
    raise TimeoutError('the deployment controller did not settle')


def record(server: Server, out: pathlib.Path) -> None:
    version = server.get('/version')
    out.mkdir(parents=True, exist_ok=True)
    base = f'/apis/apps/v1/namespaces/{NAMESPACE}/deployments'
    for namespace in (NAMESPACE, OTHER_NAMESPACE):
        body = {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': namespace}}
        assert server.exchange('POST', '/api/v1/namespaces', body)['response']['status'] in (201, 409)
    deployment = {
        'apiVersion': 'apps/v1', 'kind': 'Deployment',
        'metadata': {'name': NAME, 'labels': {'app': NAME}},
        'spec': {'replicas': 0, 'selector': {'matchLabels': {'app': NAME}},
                 'template': {'metadata': {'labels': {'app': NAME}},
                              'spec': {'containers': [{'name': 'c', 'image': 'nginx:1.25'}]}}},
    }
    assert server.exchange('POST', base, deployment)['response']['status'] == 201
    settled(server, base)

    since = server.get('/apis/apps/v1/deployments')['metadata']['resourceVersion']
    query = f'watch=true&allowWatchBookmarks=true&resourceVersion={since}'
    watches = {
        'watch-bookmarks-cluster': (
            TimedWatch(server, f'/apis/apps/v1/deployments?{query}'),
            'all namespaces, from a LIST\'s resourceVersion, no timeoutSeconds'),
        'watch-bookmarks-namespace': (
            TimedWatch(server, f'{base}?{query}&timeoutSeconds={TIMEOUT_SECONDS}'),
            f'the namespace of the change, from a LIST\'s resourceVersion, timeoutSeconds={TIMEOUT_SECONDS}'),
        'watch-bookmarks-other-namespace': (
            TimedWatch(server, f'/apis/apps/v1/namespaces/{OTHER_NAMESPACE}/deployments?{query}'),
            'a namespace where nothing changes, from a LIST\'s resourceVersion, no timeoutSeconds'),
        'watch-bookmarks-no-version': (
            TimedWatch(server, '/apis/apps/v1/deployments?watch=true&allowWatchBookmarks=true'),
            'all namespaces, without a resourceVersion (synthetic ADDED first), no timeoutSeconds'),
    }
    first = min(watch.started for watch, _ in watches.values())
    time.sleep(max(0.0, first + QUIET_SECONDS - time.monotonic()))
    exchange = server.exchange('PATCH', f'{base}/{NAME}', {'metadata': {'labels': {'tier': 'quiet'}}},
                               content_type='application/merge-patch+json')
    changed = time.monotonic()
    assert exchange['response']['status'] == 200, exchange
    change_rv = exchange['response']['body']['metadata']['resourceVersion']
    time.sleep(max(0.0, changed + AFTER_SECONDS - time.monotonic()))
    after_rv = server.get('/apis/apps/v1/deployments')['metadata']['resourceVersion']

    for name, (watch, what) in watches.items():
        watch.close()
        change = {'at': round(changed - watch.started, 3), 'request': exchange['request'],
                  'status': exchange['response']['status'], 'resourceVersion': change_rv}
        note = (f'one watch (allowWatchBookmarks): {what}; Deployments quiet for {QUIET_SECONDS} s, then one '
                f'label change ({NAMESPACE}/{NAME}, "change"), then {AFTER_SECONDS} s more; "line_times": '
                'seconds after the watch request per stream line; "list_after": a LIST\'s resourceVersion '
                'at the end, which the cluster\'s other writes (leases, events) moved')
        recorded = watch.recording(note, list_before=since, change=change, list_after=after_rv)
        data = {'note': recorded.pop('note'), 'server_version': version, **recorded}
        (out / f'{name}.json').write_text(json.dumps(data, indent=1) + '\n')
        events = [json.loads(line)['type'] for line in data['response']['stream_lines']]
        print(f'{out / name}.json: {list(zip(events, data["line_times"], strict=True))} '
              f'change at {change["at"]} (rv {change_rv}), ended {data["ended_by_server_at"]}',
              file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = command_line(module='tests.emulator.record_bookmarks', doc=__doc__).parse_args(argv)
    record(Server(args.kubeconfig), args.out)


if __name__ == '__main__':
    main()
