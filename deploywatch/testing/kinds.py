"""
The resource types the emulated API server serves, and their registry strategies.

A "strategy" is what kube-apiserver's registry does to an object on the way in
(``pkg/registry/apps/deployment/strategy.go`` for Deployments): defaulting,
resetting fields the caller may not set, and when ``metadata.generation``
moves. The Deployment rules here follow that file and the recordings in
``tests/emulator/recordings``:

* create: ``status`` is dropped, ``generation`` is 1, defaults are filled in;
* update: ``status`` is kept from the stored object; ``generation`` moves when
  ``spec`` *or annotations* change (annotations are copied to ReplicaSets);
* status update: ``spec`` and ``labels`` are kept from the stored object, so the
  controller can write status and the revision annotation without moving
  ``generation``;
* scale: the ``/scale`` subresource reads and writes ``spec.replicas`` through an
  ``autoscaling/v1`` Scale (``scale``); it is an update of the spec, so it moves
  ``generation``.

All of it is the same on every recorded version (``recordings/v1.*``) but for how
the objects are written (``versions``): an unset ``creationTimestamp`` (a pod
template's, a BOOKMARK's) is ``null`` up to v1.28 and left out since, and
``status.terminatingReplicas`` is kept by a status update only where it is on.
"""
import copy
import dataclasses
from typing import Any

from deploywatch.testing.versions import KubeVersion

Obj = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    has_status: bool = True

    @property
    def api_version(self) -> str:
        return f'{self.group}/{self.version}' if self.group else self.version

    @property
    def qualified(self) -> str:
        """How errors name the resource: ``deployments.apps``, or ``namespaces`` for core."""
        return f'{self.plural}.{self.group}' if self.group else self.plural


DEPLOYMENTS = ResourceType('apps', 'v1', 'deployments', 'Deployment', namespaced=True)
NAMESPACES = ResourceType('', 'v1', 'namespaces', 'Namespace', namespaced=False)
EVENTS = ResourceType('', 'v1', 'events', 'Event', namespaced=True, has_status=False)
CRDS = ResourceType('apiextensions.k8s.io', 'v1', 'customresourcedefinitions',
                    'CustomResourceDefinition', namespaced=False)
ALL = (DEPLOYMENTS, NAMESPACES, EVENTS, CRDS)


def find(group: str, version: str, plural: str) -> ResourceType | None:
    for resource in ALL:
        if (resource.group, resource.version, resource.plural) == (group, version, plural):
            return resource
    return None


def prepare_create(resource: ResourceType, obj: Obj, *, version: KubeVersion) -> None:
    if resource.has_status:
        obj['status'] = {}
    if resource is DEPLOYMENTS:
        obj['metadata']['generation'] = 1
        _default_deployment(obj, version)
    elif resource is NAMESPACES:
        obj['spec'] = {'finalizers': ['kubernetes']}
        obj['status'] = {'phase': 'Active'}
        obj['metadata'].setdefault('labels', {})['kubernetes.io/metadata.name'] = obj['metadata']['name']


def prepare_update(resource: ResourceType, new: Obj, old: Obj, *, version: KubeVersion) -> None:
    if resource.has_status:
        new['status'] = copy.deepcopy(old.get('status', {}))
    if resource is DEPLOYMENTS:
        _default_deployment(new, version)
        if (new.get('spec') != old.get('spec')
                or new['metadata'].get('annotations') != old['metadata'].get('annotations')):
            new['metadata']['generation'] = old['metadata'].get('generation', 0) + 1


def prepare_status_update(resource: ResourceType, new: Obj, old: Obj, *, version: KubeVersion) -> None:
    new['spec'] = copy.deepcopy(old.get('spec'))
    labels = old['metadata'].get('labels')
    new['metadata'].pop('labels', None)
    if labels is not None:
        new['metadata']['labels'] = copy.deepcopy(labels)
    status = new.get('status')
    if (resource is DEPLOYMENTS and not version.terminating_replicas and isinstance(status, dict)
            and 'terminatingReplicas' not in (old.get('status') or {})):
        # Unknown before v1.33, then behind an alpha gate: dropped unless already stored
        # (strategy.go's dropDisabledStatusFields).
        status.pop('terminatingReplicas', None)


def empty(resource: ResourceType, *, version: KubeVersion) -> Obj:
    """The empty object of a kind, as the Go structs serialise it: what a create is compared with
    to find the fields its manager set (``fields``)."""
    obj = bookmark(resource, '', version=version)
    del obj['metadata']['resourceVersion']
    obj.get('spec', {}).pop('replicas', None)  # *int32, omitempty: absent from an empty apps/v1 object
    return obj


def scale(deployment: Obj) -> Obj:
    """The ``autoscaling/v1`` Scale of a Deployment, as ``/scale`` answers it (``v1.*/scale.json``)."""
    metadata = deployment['metadata']
    spec: Obj = {}
    if deployment['spec'].get('replicas'):
        spec['replicas'] = deployment['spec']['replicas']  # omitempty: 0 is left out
    status: Obj = {'replicas': (deployment.get('status') or {}).get('replicas', 0)}
    selector = _selector_string(deployment['spec'].get('selector'))
    if selector:
        status['selector'] = selector
    return {'kind': 'Scale', 'apiVersion': 'autoscaling/v1',
            'metadata': {field: metadata[field] for field in
                         ('name', 'namespace', 'uid', 'resourceVersion', 'creationTimestamp')},
            'spec': spec, 'status': status}


def _selector_string(selector: Any) -> str:
    """A LabelSelector as ``labels.Selector.String()`` writes it: requirements sorted by key."""
    if not isinstance(selector, dict):
        return ''
    requirements = [(key, f'{key}={value}') for key, value in (selector.get('matchLabels') or {}).items()]
    for expression in selector.get('matchExpressions') or []:
        key, operator = expression.get('key', ''), expression.get('operator')
        values = ','.join(sorted(expression.get('values') or []))
        text = {'In': f'{key} in ({values})', 'NotIn': f'{key} notin ({values})',
                'Exists': key, 'DoesNotExist': f'!{key}'}.get(operator, '')
        requirements.append((key, text))
    return ','.join(text for _, text in sorted(requirements))


def bookmark(resource: ResourceType, resource_version: str, *, version: KubeVersion) -> Obj:
    """A BOOKMARK object: an empty object of the kind, as the Go structs serialise it."""
    unset = {'creationTimestamp': None} if version.null_creation_timestamps else {}  # omitzero since v1.33
    obj: Obj = {
        'kind': resource.kind,
        'apiVersion': resource.api_version,
        'metadata': {'resourceVersion': resource_version, **unset},
    }
    if resource is DEPLOYMENTS:  # exactly as recorded in watch-stream.json and v1.*/watch-everyday.json
        obj['spec'] = {'replicas': 0, 'selector': None,
                       'template': {'metadata': dict(unset), 'spec': {'containers': None}},
                       'strategy': {}}
        obj['status'] = {}
    elif resource.has_status:
        obj['spec'] = {}
        obj['status'] = {}
    return obj


def _default_deployment(obj: Obj, version: KubeVersion) -> None:
    """The defaults kube-apiserver fills in (pkg/apis/apps/v1/defaults.go and core's)."""
    spec = obj.setdefault('spec', {})
    if not isinstance(spec, dict):
        return
    spec.setdefault('replicas', 1)
    strategy = spec.setdefault('strategy', {})
    if isinstance(strategy, dict):
        strategy.setdefault('type', 'RollingUpdate')
        if strategy['type'] == 'RollingUpdate':
            rolling = strategy.setdefault('rollingUpdate', {})
            if isinstance(rolling, dict):
                rolling.setdefault('maxUnavailable', '25%')
                rolling.setdefault('maxSurge', '25%')
    spec.setdefault('revisionHistoryLimit', 10)
    spec.setdefault('progressDeadlineSeconds', 600)
    template = spec.get('template')
    if not isinstance(template, dict):
        return
    template_metadata = template.setdefault('metadata', {})
    if isinstance(template_metadata, dict):  # a zero metav1.Time: null, or left out (omitzero)
        if version.null_creation_timestamps:
            template_metadata.setdefault('creationTimestamp', None)
        elif template_metadata.get('creationTimestamp', '') is None:
            del template_metadata['creationTimestamp']
    pod_spec = template.get('spec')
    if not isinstance(pod_spec, dict):
        return
    pod_spec.setdefault('restartPolicy', 'Always')
    pod_spec.setdefault('terminationGracePeriodSeconds', 30)
    pod_spec.setdefault('dnsPolicy', 'ClusterFirst')
    pod_spec.setdefault('securityContext', {})
    pod_spec.setdefault('schedulerName', 'default-scheduler')
    for key in ('initContainers', 'containers'):
        containers = pod_spec.get(key)
        for container in containers if isinstance(containers, list) else []:
            if isinstance(container, dict):
                _default_container(container)


def _default_container(container: Obj) -> None:
    container.setdefault('resources', {})
    container.setdefault('terminationMessagePath', '/dev/termination-log')
    container.setdefault('terminationMessagePolicy', 'File')
    image = container.get('image')
    tag = image.rsplit('/', 1)[-1] if isinstance(image, str) else ''
    latest = '@' not in tag and (':' not in tag or tag.endswith(':latest'))
    container.setdefault('imagePullPolicy', 'Always' if latest else 'IfNotPresent')
    for port in container.get('ports') or []:
        if isinstance(port, dict):
            port.setdefault('protocol', 'TCP')
