"""
deploywatch's container, run as a process: the command a pod would run, in its environment.

Kubernetes runs ``command`` (or the image's ENTRYPOINT) followed by ``args`` (or the
image's CMD), with the image's ENV plus the container's ``env``. :func:`argv` and
:func:`environment` put these together from the Dockerfile and a built manifest, and
:class:`Replica` runs the result and reads stdout as the event stream, every line
validated against the shipped JSON schema.
"""
import json
import pathlib
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import jsonschema

from tests.deploy.dockerfile import Image
from tests.deploy.manifests import REPO, Obj

SCHEMA = json.loads((REPO / 'deploywatch' / 'schema' / 'event-v1.json').read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
WAIT = 30.0
IMAGE_LIVENESS = '--liveness=http://0.0.0.0:8080/healthz'

Event = dict[str, Any]


def argv(image: Image, container: Obj) -> list[str]:
    """What the container runs: Kubernetes' rule for command/args over ENTRYPOINT/CMD."""
    if 'command' in container:
        return [*container['command'], *container.get('args', [])]
    return [*image.entrypoint, *container.get('args', image.cmd)]


def on_free_port(command: list[str]) -> list[str]:
    """
    The same command with Kopf's liveness endpoint on a free loopback port.

    In a cluster each pod has its own network namespace and port 8080 to itself; here
    replicas share the host's, beside whatever else runs on it.
    """
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    free = f'--liveness=http://127.0.0.1:{port}/healthz'
    replaced = [part.replace(IMAGE_LIVENESS, free) for part in command]
    assert replaced != command, f'no {IMAGE_LIVENESS} in {command}'
    return replaced


def environment(image: Image, container: Obj, *, venv: pathlib.Path, pod: str,
                extra: Mapping[str, str]) -> dict[str, str]:
    """The image's ENV (its venv being ``venv``), then the container's env, then ``extra``."""
    env = image.environment(venv=venv)
    for item in container.get('env', []):
        if 'value' in item:
            env[item['name']] = item['value']
        elif item.get('valueFrom', {}).get('fieldRef', {}).get('fieldPath') == 'metadata.name':
            env[item['name']] = pod
        else:
            raise AssertionError(f'no emulation for env {item}')
    env.update(extra)
    return env


class Replica:
    """One running container; stdout parsed as events, stderr kept in a file."""

    def __init__(self, command: list[str], *, env: Mapping[str, str], stderr_path: pathlib.Path,
                 cwd: pathlib.Path = pathlib.Path('/')) -> None:
        self.stderr_path = stderr_path
        self.events: list[Event] = []
        self._problems: list[str] = []
        self._changed = threading.Condition()
        with stderr_path.open('wb') as stderr:
            self.process = subprocess.Popen(command, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=stderr)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                event = json.loads(raw)
                VALIDATOR.validate(event)
            except (ValueError, jsonschema.ValidationError) as error:
                with self._changed:
                    self._problems.append(f'invalid line {raw[:300]!r}: {error}')
                continue
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors='replace')

    def wait_for(self, predicate: Callable[[Event], bool], *, what: str, timeout: float = WAIT) -> Event:
        """The first event that matches; fail after the bound, with what was printed."""
        def first(events: list[Event]) -> list[Event]:
            return [event for event in events if predicate(event)][:1]
        return self.wait_until(first, what=what, timeout=timeout)[0]

    def wait_until(self, condition: Callable[[list[Event]], list[Event]], *, what: str,
                   timeout: float = WAIT) -> list[Event]:
        """Until ``condition`` of all events so far is non-empty; its value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                assert not self._problems, self._problems
                found = condition(self.events)
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._reader.is_alive():
                    seen = [(e['type'], e['namespace'], e['name']) for e in self.events[-50:]]
                    raise AssertionError(f'never printed: {what}; printed ({len(self.events)}, the last 50 '
                                         f'shown): {seen}\nstderr:\n{self.stderr[-3000:]}')
                self._changed.wait(remaining)

    def names(self, type_: str | None = None) -> list[str]:
        with self._changed:
            return [e['name'] for e in self.events if type_ is None or e['type'] == type_]

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, as the kubelet stops a container; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        return code


def named(name: str, type_: str | None = None) -> Callable[[Event], bool]:
    return lambda event: event['name'] == name and (type_ is None or event['type'] == type_)

