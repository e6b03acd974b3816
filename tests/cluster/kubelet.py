"""
The loopback control plane's stand-in kubelet: one Node whose pods start and stop on time.

There is no scheduler, container runtime or real kubelet here. Without this, every pod stays
Pending and no rollout ever completes. So this process does their visible part through the
API, and the ReplicaSet and Deployment controllers do the rest for real:

* it registers the Node ``deploywatch-node`` (Ready) and binds each new pod to it;
* ``--delay`` seconds after a pod appears, it writes the status a kubelet would (Running,
  Ready, one ready container status a container), unless an image's name contains
  ``never-ready``: that pod stays Pending, so a rollout with a short
  ``progressDeadlineSeconds`` fails with ProgressDeadlineExceeded;
* ``--delay`` seconds after a bound pod is deleted (graceful deletion: the pod keeps its
  ``deletionTimestamp`` meanwhile, so a Deployment counts it in ``terminatingReplicas``), it
  removes the pod, as a kubelet does once the containers have stopped.

Standard library only. Each watch is opened with a server-side timeout and a read timeout,
and a failure lists again, so a kube-apiserver restart is survived without help.
"""
import argparse
import datetime
import heapq
import json
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

NODE = 'deploywatch-node'
Pod = dict[str, Any]


class Api:
    def __init__(self, server: str, ca: str, token: str) -> None:
        self.server, self.token = server, token
        self.context = ssl.create_default_context(cafile=ca)

    def open(self, method: str, path: str, body: object = None, *, timeout: float = 30,
             content_type: str = 'application/json') -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, method=method, data=data)
        request.add_header('Authorization', f'Bearer {self.token}')
        request.add_header('Accept', 'application/json')
        if data is not None:
            request.add_header('Content-Type', content_type)
        return urllib.request.urlopen(request, context=self.context, timeout=timeout)

    def call(self, method: str, path: str, body: object = None, **kwargs: Any) -> Any:
        with self.open(method, path, body, **kwargs) as response:
            return json.load(response)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def never_ready(pod: Pod) -> bool:
    return any('never-ready' in str(c.get('image', '')) for c in pod.get('spec', {}).get('containers', []))


def is_ready(pod: Pod) -> bool:
    conditions = pod.get('status', {}).get('conditions') or []
    return any(c.get('type') == 'Ready' and c.get('status') == 'True' for c in conditions)


def ready_status(pod: Pod) -> dict[str, Any]:
    t = now()
    return {'status': {
        'phase': 'Running', 'startTime': t, 'hostIP': '127.0.0.1', 'podIP': '127.0.0.1',
        'conditions': [{'type': kind, 'status': 'True', 'lastTransitionTime': t}
                       for kind in ('PodScheduled', 'Initialized', 'ContainersReady', 'Ready')],
        'containerStatuses': [{'name': c['name'], 'image': c.get('image', ''), 'imageID': '',
                               'ready': True, 'started': True, 'restartCount': 0,
                               'state': {'running': {'startedAt': t}}}
                              for c in pod.get('spec', {}).get('containers', [])],
    }}


class Kubelet:
    def __init__(self, api: Api, delay: float) -> None:
        self.api, self.delay = api, delay
        self.due: list[tuple[float, str, str, str, str]] = []  # (when, action, namespace, name, uid)
        self.lock = threading.Condition()

    def later(self, delay: float, action: str, pod: Pod) -> None:
        meta = pod['metadata']
        with self.lock:
            when = time.monotonic() + delay
            heapq.heappush(self.due, (when, action, meta['namespace'], meta['name'], meta['uid']))
            self.lock.notify()

    def seen(self, pod: Pod) -> None:
        """What this pod needs next, from what the watch says of it."""
        if pod['metadata'].get('deletionTimestamp'):
            if pod['spec'].get('nodeName'):
                self.later(self.delay, 'remove', pod)
        elif not pod['spec'].get('nodeName'):
            self.later(0, 'bind', pod)
        elif not is_ready(pod) and not never_ready(pod):
            self.later(self.delay, 'start', pod)

    def register(self) -> None:
        node = {'apiVersion': 'v1', 'kind': 'Node', 'metadata': {'name': NODE}}
        try:
            self.api.call('POST', '/api/v1/nodes', node)
        except urllib.error.HTTPError as error:
            if error.code != 409:
                raise
        t = now()
        ready = {'type': 'Ready', 'status': 'True', 'reason': 'KubeletReady', 'lastHeartbeatTime': t,
                 'lastTransitionTime': t, 'message': 'the stand-in kubelet of tests/cluster'}
        self.api.call('PATCH', f'/api/v1/nodes/{NODE}/status', {'status': {'conditions': [ready]}},
                      content_type='application/strategic-merge-patch+json')

    def watch_forever(self) -> None:
        while True:
            try:
                self.register()
                listing = self.api.call('GET', '/api/v1/pods')
                for pod in listing['items']:
                    self.seen(pod)
                version = listing['metadata']['resourceVersion']
                while version:
                    version = self.watch(version)
            except Exception as error:  # a control plane restart: list again
                print(f'kubelet: {error!r}; listing again in 1 s', flush=True)
                time.sleep(1)

    def watch(self, version: str) -> str:
        """One watch request from ``version``; the version to go on from, or '' to list again."""
        query = urllib.parse.urlencode({'watch': '1', 'resourceVersion': version,
                                        'allowWatchBookmarks': 'true', 'timeoutSeconds': '60'})
        with self.api.open('GET', f'/api/v1/pods?{query}', timeout=90) as response:
            for line in response:
                event = json.loads(line)
                if event['type'] == 'ERROR':
                    return ''
                version = event['object']['metadata']['resourceVersion']
                if event['type'] in ('ADDED', 'MODIFIED'):
                    self.seen(event['object'])
        return version

    def act_forever(self) -> None:
        while True:
            with self.lock:
                while not self.due or self.due[0][0] > time.monotonic():
                    self.lock.wait(timeout=max(0.01, self.due[0][0] - time.monotonic()) if self.due else None)
                _, action, namespace, name, uid = heapq.heappop(self.due)
            path = f'/api/v1/namespaces/{namespace}/pods/{name}'
            try:
                pod = self.api.call('GET', path)
                if pod['metadata']['uid'] != uid:
                    continue
                if action == 'bind' and not pod['spec'].get('nodeName'):
                    binding = {'apiVersion': 'v1', 'kind': 'Binding', 'metadata': {'name': name, 'uid': uid},
                               'target': {'apiVersion': 'v1', 'kind': 'Node', 'name': NODE}}
                    self.api.call('POST', f'{path}/binding', binding)
                elif action == 'start' and not pod['metadata'].get('deletionTimestamp') and not is_ready(pod):
                    self.api.call('PATCH', f'{path}/status', ready_status(pod),
                                  content_type='application/merge-patch+json')
                elif action == 'remove':
                    options = {'kind': 'DeleteOptions', 'apiVersion': 'v1', 'gracePeriodSeconds': 0,
                               'preconditions': {'uid': uid}}
                    self.api.call('DELETE', path, options)
            except urllib.error.HTTPError as error:
                if error.code not in (404, 409):
                    print(f'kubelet: {action} {namespace}/{name}: HTTP {error.code}', flush=True)
            except Exception as error:  # the next event of this pod tries again
                print(f'kubelet: {action} {namespace}/{name}: {error!r}', flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--server', required=True)
    parser.add_argument('--ca', required=True)
    parser.add_argument('--token-file', required=True, help='a file holding the bearer token')
    parser.add_argument('--delay', type=float, default=1.0, help='seconds from a pod appearing to Ready')
    args = parser.parse_args()
    with open(args.token_file) as file:
        token = file.read().strip()
    kubelet = Kubelet(Api(args.server, args.ca, token), args.delay)
    threading.Thread(target=kubelet.watch_forever, daemon=True).start()
    kubelet.act_forever()


if __name__ == '__main__':
    main()
