"""
Realistic Deployment manifests, shaped like what ``kubectl create deployment`` sends.

Used by the tests, ``make demo`` and ``make bench`` alike, so that all three
exercise the same kind of object: labels, a selector, containers with env
values (some plain, to exercise redaction; some from secrets), ports, probes
and resources.
"""
from typing import Any


def deployment(
        name: str,
        *,
        namespace: str = 'default',
        image: str = 'nginx:1.25',
        replicas: int = 1,
        labels: dict[str, str] | None = None,
        sidecar: bool = False,
) -> dict[str, Any]:
    containers: list[dict[str, Any]] = [{
        'name': 'app',
        'image': image,
        'ports': [{'containerPort': 8080, 'protocol': 'TCP'}],
        'env': [
            {'name': 'LOG_LEVEL', 'value': 'info'},
            {'name': 'DATABASE_PASSWORD', 'value': 's3cr3t-do-not-print'},
            {'name': 'API_TOKEN', 'valueFrom': {'secretKeyRef': {'name': f'{name}-api', 'key': 'token'}}},
        ],
        'resources': {'requests': {'cpu': '50m', 'memory': '64Mi'}, 'limits': {'memory': '128Mi'}},
        'readinessProbe': {'httpGet': {'path': '/healthz', 'port': 8080}, 'periodSeconds': 10},
    }]
    if sidecar:
        containers.append({'name': 'proxy', 'image': 'envoyproxy/envoy:v1.31.0',
                           'args': ['--config-path', '/etc/envoy/envoy.yaml'],
                           'env': [{'name': 'ENVOY_UID', 'value': '0'}]})
    return {
        'apiVersion': 'apps/v1',
        'kind': 'Deployment',
        'metadata': {'name': name, 'namespace': namespace, 'labels': {'app': name, **(labels or {})}},
        'spec': {
            'replicas': replicas,
            'selector': {'matchLabels': {'app': name}},
            'template': {
                'metadata': {'labels': {'app': name}},
                'spec': {'containers': containers},
            },
        },
    }


def namespace(name: str) -> dict[str, Any]:
    return {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': name}}
