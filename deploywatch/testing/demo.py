"""
``make demo``: deploywatch against an emulated API server, no cluster needed.

Starts the emulated kube-apiserver on 127.0.0.1 seeded with Deployments in two
namespaces, runs ``kopf run operator/handlers.py --namespace=default`` against
it, plays a short scenario (create, scale, image change, a status update by
the "deployment controller", delete, and a change in the other namespace that
must not show), and ends by itself.

Piped (``make demo | jq``), stdout carries exactly what deploywatch printed,
JSON Lines, like the real thing. On a terminal, the same events are shown in the
text format (``deploywatch.output.text``, with the ROLLOUT and BY columns) instead of
walls of JSON: the first thing a newcomer sees should be readable. The
narration goes to stderr. The writes carry the field managers and subresources
kubectl and the deployment controller use, so BY shows what it would show in a
real cluster.
"""
import json
import os
import pathlib
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from deploywatch.output.text import TextEncoder
from deploywatch.testing import ServerThread, controller, factory, kinds
from deploywatch.testing.store import Store, now

DEPLOYMENTS = kinds.DEPLOYMENTS
REPO = pathlib.Path(__file__).resolve().parents[2]
PAUSE = 0.5


def say(text: str) -> None:
    print(f'# {text}', file=sys.stderr, flush=True)


def main() -> int:
    with ServerThread() as server, tempfile.TemporaryDirectory() as tmp:
        store = server.server.store
        server.call(store.create, kinds.NAMESPACES, '', factory.namespace('staging'), manager='demo')
        for namespace, name, replicas in [('default', 'frontend', 2), ('default', 'backend', 1),
                                          ('staging', 'frontend', 1)]:
            server.call(store.create, DEPLOYMENTS, namespace,
                        factory.deployment(name, namespace=namespace, replicas=replicas),
                        manager='kubectl-create')
        kubeconfig = server.kubeconfig(pathlib.Path(tmp) / 'kubeconfig')
        say(f'emulated API server on {server.url}, 3 Deployments in "default" and "staging"')
        say('running: kopf run operator/handlers.py --namespace=default')

        lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        operator = subprocess.Popen(
            [str(pathlib.Path(sys.executable).parent / 'kopf'), 'run', '--quiet',
             str(REPO / 'operator' / 'handlers.py'), '--namespace=default'],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=REPO,
            env={**{k: v for k, v in os.environ.items() if not k.startswith('DEPLOYWATCH_')},
                 'KUBECONFIG': str(kubeconfig), 'DEPLOYWATCH_RESYNC_SECONDS': '0'})
        threading.Thread(target=_relay, args=(operator, lines), daemon=True).start()

        def expect(what: str, test: Callable[[dict[str, Any]], bool]) -> None:
            while True:
                event = lines.get(timeout=30)
                if event is None:
                    raise SystemExit(f'deploywatch ended before: {what}')
                if test(event):
                    return

        try:
            for _ in range(2):
                expect('the initial listing', lambda e: e['type'] == 'ADDED')
            _play(server, store, expect)
        finally:
            operator.terminate()
            operator.wait(timeout=15)
        say('done: every line above is one event, schema deploywatch/v1'
            + (' (shown in the text format; piped, they are JSON Lines)' if sys.stdout.isatty() else ''))
    return 0


def _play(server: ServerThread, store: Store, expect: Callable[..., None]) -> None:
    def step(text: str, change: Callable[[], Any], *, name: str, type: str) -> None:
        say(text)
        time.sleep(PAUSE)  # paced for a person reading along; the stream itself does not wait
        server.call(change)
        expect(text, lambda e: e['name'] == name and e['type'] == type)

    step('kubectl create deployment worker',
         lambda: store.create(DEPLOYMENTS, 'default', factory.deployment('worker', image='busybox:1.36'),
                              manager='kubectl-create'),
         name='worker', type='ADDED')
    step('kubectl scale deployment frontend --replicas=3',
         lambda: _scale(store, 'frontend', 3),
         name='frontend', type='MODIFIED')
    step('kubectl set image deployment/backend app=nginx:1.27',
         lambda: _patch(store, 'backend', {'spec': {'template': {'spec': {'containers': [
             {'name': 'app', 'image': 'nginx:1.27'}]}}}}, manager='kubectl-set'),
         name='backend', type='MODIFIED')
    say('kubectl scale deployment frontend --replicas=5 -n staging   (other namespace: not shown)')
    server.call(lambda: _scale(store, 'frontend', 5, 'staging'))
    step('the deployment controller reports frontend rolled out (status only)',
         lambda: _roll_out(store, 'frontend'),
         name='frontend', type='MODIFIED')
    step('kubectl delete deployment worker',
         lambda: store.delete(DEPLOYMENTS, 'default', 'worker', {}),
         name='worker', type='DELETED')


def _patch(store: Store, name: str, patch: dict[str, Any], *, manager: str) -> None:
    store.patch(DEPLOYMENTS, 'default', name, patch, 'application/strategic-merge-patch+json',
                manager=manager)


def _scale(store: Store, name: str, replicas: int, namespace: str = 'default') -> None:
    """As ``kubectl scale``: a merge patch of ``/scale``, as the manager ``kubectl``."""
    store.patch_scale(namespace, name, {'spec': {'replicas': replicas}}, 'application/merge-patch+json',
                      manager='kubectl')


def _roll_out(store: Store, name: str) -> None:
    obj = controller.rolled_out(store.get(DEPLOYMENTS, 'default', name), time=now(), version=store.version)
    store.update(DEPLOYMENTS, 'default', name, obj, manager='kube-controller-manager', subresource='status')


def _relay(operator: 'subprocess.Popen[bytes]', lines: 'queue.Queue[dict[str, Any] | None]') -> None:
    """Pass deploywatch's stdout on (unchanged when piped, as text on a terminal), and to the scenario."""
    assert operator.stdout is not None
    text = TextEncoder(colour=not os.environ.get('NO_COLOR')) if sys.stdout.isatty() else None
    for raw in operator.stdout:
        event = json.loads(raw)
        sys.stdout.buffer.write(raw if text is None else text(event))
        sys.stdout.buffer.flush()
        lines.put(event)
    lines.put(None)


if __name__ == '__main__':
    sys.exit(main())
