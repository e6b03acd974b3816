"""
Recording what a real kube-apiserver answers to the everyday writes a watcher sees.

    python -m tests.emulator.record --kubeconfig /tmp/rk/kubeconfig --out tests/emulator/recordings/v1.28

The emulator (``deploywatch.testing``) is only as good as the evidence it is
checked against, so this takes that evidence from a real server
(``tests/cluster``: kube-apiserver and kube-controller-manager of one minor:
v1.24, v1.28, v1.34, v1.37 so far) and writes it in the format of ``recordings/`` (see its README), one
request and its response per file, with the server's ``/version`` in each.

The kubectl commands people actually run (``apply``, ``scale``, ``set image``,
``rollout pause``, ``annotate``, ``label``) are run as they are, through a small
recording proxy on 127.0.0.1: what is recorded is exactly what kubectl sent
(path, query, ``Content-Type``, ``User-Agent``, body), so that a replay can send
the emulator the same bytes. Everything else (watches, a forbidden user) is
plain HTTP from here. One watch runs across every step, so the deployment
controller's own status writes, and when each step moved ``generation``, are
recorded too; after each step the recorder waits for the controller to settle,
so the order of events does not depend on timing.

Nothing is normalised or scrubbed: the clusters are throwaway ones, and the
files are evidence. The replay (``test_real_writes.py``) normalises what is
specific to one run.
"""
import argparse
import contextlib
import http.client
import http.server
import json
import pathlib
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import yaml

Obj = dict[str, Any]

NAMESPACE = 'rec'
NAME = 'web'
BASE = f'/apis/apps/v1/namespaces/{NAMESPACE}/deployments'
CONTROLLER = '<controller>'  # a watch event the deployment controller caused, not a recorded request
# Request headers worth keeping: what the server looks at to decode the body and name the manager.
REQUEST_HEADERS = ('Content-Type', 'User-Agent')
RESPONSE_HEADERS = ('Audit-Id', 'Content-Type', 'Transfer-Encoding', 'Warning')
WATCH_SECONDS = 60  # long enough for every step; the apiserver sends a BOOKMARK 2 s before the end
FRESH_SECONDS = 80  # past the watch cache's eventFreshDuration (75 s)
CHURN = 120  # writes that overflow the watch cache's 100 events


def manifest(*, mode: str) -> Obj:
    """The Deployment kubectl applies; the second apply changes only an env value."""
    return {
        'apiVersion': 'apps/v1', 'kind': 'Deployment',
        'metadata': {'name': NAME, 'namespace': NAMESPACE, 'labels': {'app': NAME}},
        'spec': {
            'replicas': 1,
            'selector': {'matchLabels': {'app': NAME}},
            'template': {
                'metadata': {'labels': {'app': NAME}},
                'spec': {'containers': [{'name': 'c', 'image': 'nginx:1.25',
                                         'env': [{'name': 'MODE', 'value': mode}]}]},
            },
        },
    }


# What each kubectl step runs, and what its recording is named (its one write to the Deployment).
STEPS: list[tuple[str, str, list[str]]] = [
    ('apply-create', 'kubectl apply: GET (404), then a create with the last-applied annotation',
     ['apply', '-f', 'one.yaml']),
    ('apply-update', 'kubectl apply again, one env value changed: a strategic merge patch with '
     '$setElementOrder directives and the new last-applied annotation',
     ['apply', '-f', 'two.yaml']),
    ('scale', 'kubectl scale: a merge patch of the scale subresource; the answer is a Scale',
     ['scale', f'deployment/{NAME}', '--replicas=2']),
    ('set-image', 'kubectl set image: a strategic merge patch of the container image',
     ['set', 'image', f'deployment/{NAME}', 'c=nginx:1.26']),
    ('rollout-pause', 'kubectl rollout pause: a strategic merge patch of spec.paused',
     ['rollout', 'pause', f'deployment/{NAME}']),
    ('annotate', 'kubectl annotate: a merge patch of metadata.annotations; generation moves',
     ['annotate', f'deployment/{NAME}', 'example.com/note=hello']),
    ('label', 'kubectl label: a merge patch of metadata.labels; generation stays',
     ['label', f'deployment/{NAME}', 'tier=frontend']),
]


# -- talking to the server -----------------------------------------------------------------------

class Server:
    """The real server of a kubeconfig (token auth, as ``tests/cluster/up.sh`` sets it up)."""

    def __init__(self, kubeconfig: pathlib.Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        context = next(c['context'] for c in config['contexts'] if c['name'] == config['current-context'])
        cluster = next(c['cluster'] for c in config['clusters'] if c['name'] == context['cluster'])
        user = next(u['user'] for u in config['users'] if u['name'] == context['user'])
        self.url = urllib.parse.urlsplit(cluster['server'])
        self.token: str = user['token']
        self._ssl = ssl.create_default_context(cafile=cluster['certificate-authority'])

    def connect(self, timeout: float = 30) -> http.client.HTTPSConnection:
        assert self.url.hostname is not None
        return http.client.HTTPSConnection(self.url.hostname, self.url.port, context=self._ssl,
                                           timeout=timeout)

    def headers(self, token: str | None = None) -> dict[str, str]:
        """What every recorded request sends: a bearer token (the admin's unless given), JSON, urllib's."""
        return {'Authorization': f'Bearer {token or self.token}', 'Accept': 'application/json',
                'User-Agent': 'Python-urllib/3.11'}

    def stream(self, path: str, *, timeout: float,
               token: str | None = None) -> tuple[http.client.HTTPSConnection, http.client.HTTPResponse]:
        """A GET whose response is read as it arrives (a watch): the connection and the response."""
        connection = self.connect(timeout=timeout)
        connection.request('GET', path, headers=self.headers(token))
        return connection, connection.getresponse()

    def exchange(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                 content_type: str = 'application/json') -> Obj:
        """One request, recorded as the files of ``recordings/`` hold it."""
        headers = self.headers(token)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers['Content-Type'] = content_type
        connection = self.connect()
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            request: Obj = {'method': method, 'path': path}
            if body is not None:
                request['headers'] = {'Content-Type': content_type}
                request['body'] = body
            return {'request': request, 'response': _response(response.status, response.headers, raw)}
        finally:
            connection.close()

    def get(self, path: str) -> Obj:
        body: Obj = self.exchange('GET', path)['response']['body']
        return body


def _response(status: int, headers: http.client.HTTPMessage, raw: bytes) -> Obj:
    kept = {name: headers[name] for name in RESPONSE_HEADERS if headers.get(name) is not None}
    response: Obj = {'status': status, 'headers': kept}
    try:
        response['body'] = json.loads(raw)
    except ValueError:
        response['raw'] = raw.decode(errors='replace')
    return response


class Watch:
    """A watch read line by line in a thread: each line exactly as the server sent it."""

    def __init__(self, server: Server, path: str, *, token: str | None = None) -> None:
        self.request: Obj = {'method': 'GET', 'path': path}
        self._connection, self._http = server.stream(path, timeout=WATCH_SECONDS + 30, token=token)
        self.status = self._http.status
        self.headers = self._http.headers
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while line := self._http.readline():
            with self._lock:
                self.lines.append(line.decode())

    @property
    def events(self) -> list[Obj]:
        with self._lock:
            return [json.loads(line) for line in self.lines]

    def changes(self) -> int:
        return sum(1 for event in self.events if event['type'] != 'BOOKMARK')

    def wait_for_end(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), 'the watch did not end'
        self._connection.close()

    def recording(self, note: str, **extra: Any) -> Obj:
        kept = {name: self.headers[name] for name in RESPONSE_HEADERS if self.headers.get(name) is not None}
        return {'note': note, 'request': self.request, **extra,
                'response': {'status': self.status, 'headers': kept, 'stream_lines': list(self.lines)}}


# -- kubectl through a recording proxy -----------------------------------------------------------

class Proxy:
    """Plain HTTP on 127.0.0.1 for kubectl, HTTPS with the admin token to the server; all is kept."""

    def __init__(self, server: Server) -> None:
        self.exchanges: list[Obj] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def _forward(self) -> None:
                length = int(self.headers.get('Content-Length') or 0)
                data = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ('host', 'accept-encoding', 'connection')}
                headers['Authorization'] = f'Bearer {server.token}'  # kubectl sends none over plain HTTP
                connection = server.connect()
                try:
                    connection.request(self.command, self.path, body=data, headers=headers)
                    response = connection.getresponse()
                    raw = response.read()
                finally:
                    connection.close()
                request: Obj = {'method': self.command, 'path': self.path,
                                'headers': {n: self.headers[n] for n in REQUEST_HEADERS if self.headers[n]}}
                if data:
                    request['body'] = json.loads(data)
                proxy.exchanges.append({'request': request,
                                        'response': _response(response.status, response.headers, raw)})
                self.send_response(response.status)
                for name, value in response.headers.items():
                    if name.lower() not in ('transfer-encoding', 'connection', 'content-length'):
                        self.send_header(name, value)
                self.send_header('Content-Length', str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, *_: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@contextlib.contextmanager
def kubectl_through(proxy: Proxy, server: Server, kubectl: str) -> Iterator[Any]:
    with tempfile.TemporaryDirectory() as folder:
        directory = pathlib.Path(folder)
        config = {'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'rec',
                  'clusters': [{'name': 'rec', 'cluster': {'server': f'http://127.0.0.1:{proxy.port}'}}],
                  'users': [{'name': 'admin', 'user': {}}],
                  'contexts': [{'name': 'rec', 'context': {'cluster': 'rec', 'user': 'admin',
                                                           'namespace': NAMESPACE}}]}
        (directory / 'kubeconfig').write_text(json.dumps(config))
        (directory / 'one.yaml').write_text(json.dumps(manifest(mode='one')))
        (directory / 'two.yaml').write_text(json.dumps(manifest(mode='two')))

        def run(*args: str) -> str:
            done = subprocess.run([kubectl, '--kubeconfig', str(directory / 'kubeconfig'),
                                   '--cache-dir', str(directory / 'cache'), *args],
                                  cwd=directory, capture_output=True, text=True, timeout=60, check=False)
            if done.returncode:
                raise RuntimeError(f'kubectl {" ".join(args)}: {done.stderr}')
            return done.stdout

        yield run


def until_settled(watch: Watch, *, caught_up: Callable[[], bool], quiet: float = 2.0,
                  timeout: float = 60.0) -> None:
    """
    Until ``caught_up()`` holds and ``watch`` has seen nothing new for ``quiet`` s: the deployment
    controller is done with the last write, so the order of the recorded events does not depend
    on timing. Shared by the recorders that write a step at a time.
    """
    deadline = time.monotonic() + timeout
    seen, since = watch.changes(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if watch.changes() != seen:
            seen, since = watch.changes(), time.monotonic()
            continue
        if caught_up() and time.monotonic() - since >= quiet:
            return
    raise TimeoutError('the deployment controller did not settle')


def settle(server: Server, watch: Watch) -> None:
    """Until the deployment controller is done with the last step: status caught up, nothing new."""
    def caught_up() -> bool:
        obj = server.get(f'{BASE}/{NAME}')
        status, spec = obj.get('status', {}), obj['spec']
        return bool(status.get('observedGeneration') == obj['metadata']['generation']
                    and status.get('updatedReplicas') == status.get('availableReplicas')
                    == status.get('replicas') == spec['replicas'])
    until_settled(watch, caught_up=caught_up)


def forget(server: Server, *, since: float) -> None:
    """Make the watch cache drop the oldest events, as it does on a busy cluster.

    The apiserver's watch cache keeps at least 100 events per resource, and doubles
    instead of dropping any while its oldest event is younger than 75 s
    (``eventFreshDuration``); so: wait until the first event is older than that, then
    write enough for the cache to be full.
    """
    time.sleep(max(0.0, since + FRESH_SECONDS - time.monotonic()))
    churn = manifest(mode='churn')
    churn['metadata'] = {'name': 'churn', 'labels': {'app': 'churn'}}
    churn['spec']['replicas'] = 0
    labels = {'app': 'churn'}
    churn['spec']['selector']['matchLabels'] = churn['spec']['template']['metadata']['labels'] = labels
    assert server.exchange('POST', BASE, churn)['response']['status'] == 201
    for index in range(CHURN):
        patch = {'metadata': {'labels': {'n': str(index)}}}
        exchange = server.exchange('PATCH', f'{BASE}/churn', patch,
                                   content_type='application/merge-patch+json')
        assert exchange['response']['status'] == 200, exchange


# -- the session ---------------------------------------------------------------------------------

def record(server: Server, out: pathlib.Path, *, kubectl: str, forbidden_token: str) -> None:
    version = server.get('/version')
    kubectl_version = json.loads(subprocess.run([kubectl, 'version', '--client', '-o', 'json'],
                                                capture_output=True, text=True, check=True).stdout)
    out.mkdir(parents=True, exist_ok=True)

    def save(name: str, note: str, exchange: Obj) -> None:
        data = {'note': note, 'server_version': version, **exchange}
        (out / f'{name}.json').write_text(json.dumps(data, indent=1) + '\n')
        print(f'{out / name}.json: {exchange["response"]["status"]}', file=sys.stderr)

    save('version', 'GET /version', server.exchange('GET', '/version'))
    namespace = {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': NAMESPACE}}
    assert server.exchange('POST', '/api/v1/namespaces', namespace)['response']['status'] == 201
    since = server.get(BASE)['metadata']['resourceVersion']
    watch = Watch(server, f'{BASE}?watch=true&allowWatchBookmarks=true&resourceVersion={since}'
                          f'&timeoutSeconds={WATCH_SECONDS}')
    causes: list[str] = []
    started = time.monotonic()
    proxy = Proxy(server)
    try:
        with kubectl_through(proxy, server, kubectl) as run:
            for name, note, args in STEPS:
                before, start = watch.changes(), len(proxy.exchanges)
                run(*args)
                made = proxy.exchanges[start:]
                writes = [e for e in made if e['request']['method'] != 'GET'
                          and e['request']['path'].startswith(BASE)]
                assert len(writes) == 1, (name, [e['request'] for e in made])
                sent = [f'{e["request"]["method"]} {e["request"]["path"]} -> {e["response"]["status"]}'
                        for e in made if '/namespaces/' in e['request']['path']]
                save(name, f'{note} (kubectl {kubectl_version["clientVersion"]["gitVersion"]}: '
                     f'`kubectl {" ".join(args)}`)', {'kubectl_requests': sent, **writes[0]})
                settle(server, watch)
                after = watch.changes()
                assert after > before, f'{name} changed nothing'
                causes += [name] + [CONTROLLER] * (after - before - 1)
                if name == 'apply-create':
                    save('get-after-rollout', 'GET once the deployment controller has written the '
                         'status of the first rollout (subresource status, revision annotation)',
                         server.exchange('GET', f'{BASE}/{NAME}'))
        save('get-final', 'GET after every step: one managedFields entry per manager and subresource',
             server.exchange('GET', f'{BASE}/{NAME}'))
    finally:
        proxy.close()
    watch.wait_for_end(WATCH_SECONDS + 10)
    data = watch.recording(
        'one watch (allowWatchBookmarks) across every kubectl step; "causes" names, per change event, '
        f'the recording whose request caused it, or {CONTROLLER} for the deployment controller '
        '(the recorder waited for it to settle after each step)', causes=causes)
    save('watch-everyday', data.pop('note'), data)

    # A watch from a version older than the watch cache: one ERROR event, then the end.
    forget(server, since=started)
    too_old = Watch(server, f'{BASE}?watch=true&allowWatchBookmarks=true&resourceVersion={since}'
                            '&timeoutSeconds=3')
    too_old.wait_for_end(10)
    data = too_old.recording(f'watch from the version watch-everyday started at ({since}), once the watch '
                             f'cache has forgotten it ({CHURN} writes to another Deployment, more than '
                             f'{FRESH_SECONDS} s after it)')
    assert json.loads(data['response']['stream_lines'][0])['type'] == 'ERROR', data
    save('watch-too-old-410', data.pop('note'), data)

    # The deploywatch user of tests/cluster is bound to nothing.
    for name, note, path in [
        ('forbidden-list', 'cluster-wide LIST by a user bound to nothing', '/apis/apps/v1/deployments'),
        ('forbidden-watch', 'cluster-wide WATCH by a user bound to nothing: a 403, not a stream',
         '/apis/apps/v1/deployments?watch=true&allowWatchBookmarks=true'),
        ('forbidden-list-namespaced', 'LIST in a namespace by a user bound to nothing', BASE),
        ('forbidden-get', 'GET of one Deployment by a user bound to nothing (details.name)',
         f'{BASE}/{NAME}'),
    ]:
        save(name, note, server.exchange('GET', path, token=forbidden_token))
    save('forbidden-patch', 'merge PATCH of one Deployment by a user bound to nothing',
         server.exchange('PATCH', f'{BASE}/{NAME}', {'metadata': {'labels': {'x': 'y'}}},
                         token=forbidden_token, content_type='application/merge-patch+json'))


def command_line(*, module: str, doc: str | None) -> argparse.ArgumentParser:
    """What every recorder is run with: the server's admin kubeconfig, and where the files go."""
    parser = argparse.ArgumentParser(prog=f'python -m {module}', description=(doc or '').split('\n\n')[0])
    parser.add_argument('--kubeconfig', type=pathlib.Path, required=True, help='an admin kubeconfig (token)')
    parser.add_argument('--out', type=pathlib.Path, required=True, help='where the recordings go')
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = command_line(module='tests.emulator.record', doc=__doc__)
    parser.add_argument('--forbidden-kubeconfig', type=pathlib.Path,
                        help='a user bound to nothing (default: kubeconfig-deploywatch beside --kubeconfig)')
    beside_python = shutil.which('kubectl', path=str(pathlib.Path(sys.executable).parent))
    parser.add_argument('--kubectl', default=beside_python or 'kubectl')
    args = parser.parse_args(argv)
    forbidden = args.forbidden_kubeconfig or args.kubeconfig.parent / 'kubeconfig-deploywatch'
    record(Server(args.kubeconfig), args.out, kubectl=args.kubectl,
           forbidden_token=Server(forbidden).token)


if __name__ == '__main__':
    main()
