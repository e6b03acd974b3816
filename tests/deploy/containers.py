"""
deploywatch's container, run as a process: the command a pod would run, in its environment.

Kubernetes runs ``command`` (or the image's ENTRYPOINT) followed by ``args`` (or the
image's CMD), with the image's ENV plus the container's ``env``. :func:`argv` and
:func:`environment` put these together from the Dockerfile and a built manifest, and
:class:`Replica` runs the result and reads stdout as the event stream, every line
validated against the shipped JSON schema.
"""
import pathlib
import signal
import socket
import time
from collections.abc import Callable, Mapping

from tests.deploy.dockerfile import Image
from tests.deploy.manifests import Obj
from tests.harness.operator import WAIT, Event, OperatorProcess

IMAGE_LIVENESS = '--liveness=http://0.0.0.0:8080/healthz'
METRICS_PORT = 'DEPLOYWATCH_METRICS_PORT'


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
    free = f'--liveness=http://127.0.0.1:{free_port()}/healthz'
    replaced = [part.replace(IMAGE_LIVENESS, free) for part in command]
    assert replaced != command, f'no {IMAGE_LIVENESS} in {command}'
    return replaced


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port: int = probe.getsockname()[1]
    return port


def environment(image: Image, container: Obj, *, venv: pathlib.Path, pod: str,
                extra: Mapping[str, str]) -> dict[str, str]:
    """
    The image's ENV (its venv being ``venv``), then the container's env, then ``extra``.

    The metrics port the container sets is replaced by a free one, for the reason of
    :func:`on_free_port` (the metrics server binds every interface, and two replicas here
    share them); ``env[METRICS_PORT]`` says which.
    """
    env = image.environment(venv=venv)
    for item in container.get('env', []):
        if item['name'] == METRICS_PORT and 'value' in item:
            env[METRICS_PORT] = str(free_port())
        elif 'value' in item:
            env[item['name']] = item['value']
        elif item.get('valueFrom', {}).get('fieldRef', {}).get('fieldPath') == 'metadata.name':
            env[item['name']] = pod
        else:
            raise AssertionError(f'no emulation for env {item}')
    env.update(extra)
    return env


class Replica(OperatorProcess):
    """One running container (its entrypoint and exactly its environment); stdout parsed as events."""

    def __init__(self, command: list[str], *, env: Mapping[str, str], stderr_path: pathlib.Path,
                 cwd: pathlib.Path = pathlib.Path('/')) -> None:
        super().__init__(command=command, environment=env, stderr_path=stderr_path, cwd=cwd)

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

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """SIGTERM, as the kubelet stops a container; its exit status."""
        return super().stop(sig, timeout=timeout)


def named(name: str, type_: str | None = None) -> Callable[[Event], bool]:
    return lambda event: event['name'] == name and (type_ is None or event['type'] == type_)

