"""
Replaying the recorded kube-apiserver exchanges (``recordings/``) against the emulator.

The recordings are raw HTTP exchanges with real kube-apiservers (v1.24 at the
top of ``recordings/``, each other version in its own ``v1.*`` folder: see
``recordings/README.md``); they are copied here byte for byte so that the tests
do not depend on anything outside the repository. This module loads them,
talks plain HTTP to a :class:`ServerThread` (``urllib`` for requests, a raw
socket for watches, so that the chunked framing can be checked too), and
normalises what is specific to one run: uids, timestamps, resourceVersion
numbers and the contents of ``managedFields``. Everything else is compared as is.
"""
import contextlib
import copy
import json
import pathlib
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from email.message import Message
from typing import Any

from deploywatch.testing import ADMIN_TOKEN

Obj = dict[str, Any]

RECORDINGS = pathlib.Path(__file__).parent / 'recordings'
MERGE_PATCH = 'application/merge-patch+json'
# What kube-controller-manager sends; the apiserver names the field manager after the part before '/'.
CONTROLLER_AGENT = ('kube-controller-manager/v1.24.17 (linux/amd64) kubernetes/22a9682/'
                    'system:serviceaccount:kube-system:deployment-controller')
BASE = '/apis/apps/v1/namespaces/rec/deployments'


def recording(name: str) -> Obj:
    data: Obj = json.loads((RECORDINGS / f'{name}.json').read_text())
    return data


def recorded_events(name: str) -> list[Obj]:
    return [json.loads(line) for line in recording(name)['response']['stream_lines']]


# -- normalising ---------------------------------------------------------------------------------

def managers(metadata: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """Who manages the object, without the field sets and times (run-specific).

    Sorted, because the apiserver orders the entries by their times.
    """
    return sorted((e['manager'], e['operation'], e['apiVersion'], e['fieldsType'], e.get('subresource', ''))
                  for e in metadata.get('managedFields') or [])


def normalise(obj: Obj) -> Obj:
    """An object with its run-specific values replaced by placeholders (their presence is kept)."""
    result = copy.deepcopy(obj)
    metadata = result.get('metadata')
    if isinstance(metadata, dict):
        for field in ('uid', 'resourceVersion', 'creationTimestamp', 'deletionTimestamp'):
            if isinstance(metadata.get(field), str):
                metadata[field] = f'<{field}>'
        if 'managedFields' in metadata:
            metadata['managedFields'] = managers(metadata)
    return result


# -- HTTP ----------------------------------------------------------------------------------------

class Response:
    def __init__(self, status: int, headers: Message, raw: bytes) -> None:
        self.status = status
        self.headers = dict(headers.items())
        self.raw = raw

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


class Client:
    """Plain HTTP to the emulator, as the recorder talked to the real server (urllib, bearer token)."""

    def __init__(self, url: str, token: str = ADMIN_TOKEN) -> None:
        self.url = url
        self.token = token

    def request(self, method: str, path: str, body: Any = None, *,
                content_type: str = 'application/json', agent: str | None = None) -> Response:
        headers = {'Authorization': f'Bearer {self.token}', 'Accept': 'application/json'}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers['Content-Type'] = content_type
        if agent is not None:
            headers['User-Agent'] = agent
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Response(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Response(error.code, error.headers, error.read())

    def replay(self, name: str, *, path: str | None = None, content_type: str | None = None) -> Response:
        """Send a recorded request (PATCHes are merge patches, as recorded)."""
        request = recording(name)['request']
        if content_type is None:
            content_type = MERGE_PATCH if request['method'] == 'PATCH' else 'application/json'
        return self.request(request['method'], path or request['path'], request.get('body'),
                            content_type=content_type)

    def get(self, name: str, *, base: str = BASE) -> Obj:
        response = self.request('GET', f'{base}/{name}')
        assert response.status == 200, response.raw
        body: Obj = response.body
        return body

    def write_status(self, name: str, recorded: Obj, *, base: str = BASE) -> Response:
        """What the deployment controller does: PUT /status with its status and revision annotation."""
        current = self.get(name, base=base)
        current['status'] = copy.deepcopy(recorded['status'])
        annotations = recorded['metadata'].get('annotations')
        current['metadata'].pop('annotations', None)
        if annotations is not None:
            current['metadata']['annotations'] = copy.deepcopy(annotations)
        return self.request('PUT', f'{base}/{name}/status', current, agent=CONTROLLER_AGENT)

    def remove_foreground_finalizer(self, name: str) -> Response:
        """What the garbage collector does once no dependents are left (a merge patch, rv-guarded)."""
        current = self.get(name)
        finalizers = [f for f in current['metadata'].get('finalizers') or [] if f != 'foregroundDeletion']
        patch = {'metadata': {'resourceVersion': current['metadata']['resourceVersion'],
                              'finalizers': finalizers or None}}
        return self.request('PATCH', f'{BASE}/{name}', patch, content_type=MERGE_PATCH,
                            agent=CONTROLLER_AGENT)


# -- watching ------------------------------------------------------------------------------------

class Watch:
    """A watch read from a raw socket in a thread: status, headers, and every chunk as sent
    (``lines`` and ``events`` read them as plain text: a gzipped stream's are its ``chunks``)."""

    def __init__(self, url: str, path: str, token: str = ADMIN_TOKEN, *,
                 headers: dict[str, str] | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        assert parsed.hostname is not None and parsed.port is not None
        extra = ''.join(f'{name}: {value}\r\n' for name, value in (headers or {}).items())
        self._socket = socket.create_connection((parsed.hostname, parsed.port), timeout=10)
        self._socket.sendall((f'GET {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n'
                              f'Authorization: Bearer {token}\r\nAccept: application/json\r\n'
                              f'User-Agent: Python-urllib/3.11\r\n{extra}\r\n').encode())
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.ended = False  # the server sent the last chunk
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, name='watch-reader', daemon=True)
        self._thread.start()

    def _read(self) -> None:
        stream = self._socket.makefile('rb')
        try:
            self.status = int(stream.readline().split()[1])
            while (line := stream.readline().decode()) not in ('\r\n', ''):
                name, _, value = line.partition(':')
                self.headers[name.strip()] = value.strip()
            assert self.headers.get('Transfer-Encoding') == 'chunked', self.headers
            while True:
                size = int(stream.readline().strip() or b'0', 16)
                if size == 0:
                    self.ended = True
                    return
                chunk = stream.read(size)
                assert stream.read(2) == b'\r\n'
                with self._lock:
                    self.chunks.append(chunk)
        except (OSError, ValueError):
            return  # closed by us
        finally:
            stream.close()

    @property
    def lines(self) -> list[bytes]:
        with self._lock:
            data = b''.join(self.chunks)
        return [line + b'\n' for line in data.split(b'\n')[:-1]]

    @property
    def events(self) -> list[Obj]:
        return [json.loads(line) for line in self.lines]

    def wait(self, condition: Callable[[list[Obj]], bool], *, timeout: float = 5.0, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self.events):
            assert time.monotonic() < deadline, f'timed out waiting for {what}; got {self.events}'
            time.sleep(0.01)

    def wait_for_end(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)
        assert self.ended, 'the watch did not end'

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(5)
