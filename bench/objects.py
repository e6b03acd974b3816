"""
Pre-serialised Deployments for the load server: realistic bytes, rendered in microseconds.

A benchmark load generator must never be the bottleneck, so it cannot build and
``json.dumps`` a 5-6 KB object per event. Instead one prototype Deployment is
built once, the slow and faithful way, and turned into a bytes template:

* the manifest is ``deploywatch.testing.factory.deployment(sidecar=True)`` (two
  containers, env, probes, resources) as ``kubectl apply`` sends it, so it also
  carries the ``kubectl.kubernetes.io/last-applied-configuration`` annotation;
* it goes through the emulated API server's store (``deploywatch.testing``), so
  defaulting, ``generation``, ``resourceVersion`` and the rolled-out status the
  deployment controller writes are those the tests use;
* its ``managedFields`` are replaced by entries as detailed as a real server's
  (``k:{"name":"app"}`` keys for list items, ``.`` for maps): the emulator's
  are shallow, and real ones are a large share of a real object's size.

Per-object fields (name, namespace, uid) are substituted once per object; the
fields a status update changes (resourceVersion, replica counts, condition and
managedFields times) are ``%``-placeholders filled per event.
"""
import json
from typing import Any

from deploywatch.testing import controller, factory, kinds
from deploywatch.testing.store import Store

NAME, NAMESPACE, UID, CREATED = '__NAME__', '__NS__', '__UID__', '2024-05-01T09:00:00Z'
STATUS_FIELDS = ('updatedReplicas', 'readyReplicas', 'availableReplicas')
REPLICAS = 3
# (updatedReplicas, readyReplicas, availableReplicas) as a rolling update of 3 replicas moves them.
ROLLOUT = ((1, 3, 3), (2, 2, 2), (3, 2, 2), (3, 3, 3))
STRUCTS = ('metadata', 'spec', 'status', 'template')  # no "." entry for these, as in real sets
LIST_KEYS = {'containers': ('name',), 'initContainers': ('name',), 'env': ('name',),
             'ports': ('containerPort', 'protocol'), 'conditions': ('type',)}

Obj = dict[str, Any]


def fields_v1(value: Any, parent: str = '') -> Obj:
    """A FieldsV1 set as server-side apply records it: ``f:`` maps, ``k:`` keyed list items, ``.``."""
    if isinstance(value, dict):
        fields: Obj = {f'f:{key}': fields_v1(child, key) for key, child in sorted(value.items())}
        return {'.': {}, **fields} if fields and parent and parent not in STRUCTS else fields
    if isinstance(value, list) and parent in LIST_KEYS and all(isinstance(v, dict) for v in value):
        items: Obj = {}
        for item in value:
            key = {k: item[k] for k in LIST_KEYS[parent] if k in item}
            items['k:' + json.dumps(key, separators=(',', ':'))] = {'.': {}, **fields_v1(item)}
        return {'.': {}, **items}
    return {}


def _entry(manager: str, fields: Obj, *, subresource: str | None = None) -> Obj:
    entry: Obj = {'manager': manager, 'operation': 'Update', 'apiVersion': 'apps/v1', 'time': CREATED,
                  'fieldsType': 'FieldsV1', 'fieldsV1': fields_v1(fields)}
    if subresource:
        entry['subresource'] = subresource
    return entry


def prototype() -> Obj:
    """The rolled-out Deployment, as a watch or GET returns it, with placeholder identity."""
    manifest = factory.deployment(NAME, namespace=NAMESPACE, replicas=REPLICAS, sidecar=True)
    applied = json.dumps(manifest, separators=(',', ':')) + '\n'
    manifest['metadata']['annotations'] = {'kubectl.kubernetes.io/last-applied-configuration': applied}
    store = Store()
    store.create(kinds.NAMESPACES, '', factory.namespace(NAMESPACE), manager='kube-apiserver')
    created = store.create(kinds.DEPLOYMENTS, NAMESPACE, manifest, manager='kubectl-client-side-apply')
    obj = store.update(kinds.DEPLOYMENTS, NAMESPACE, NAME, controller.rolled_out(created, time=CREATED),
                       manager='kube-controller-manager', subresource='status')
    metadata = obj['metadata']
    metadata.update(uid=UID, creationTimestamp=CREATED)
    metadata['managedFields'] = [
        _entry('kubectl-client-side-apply', {'metadata': {'annotations': manifest['metadata']['annotations'],
                                                          'labels': manifest['metadata']['labels']},
                                             'spec': obj['spec']}),
        _entry('kube-controller-manager', {'metadata': {'annotations': {controller.REVISION: '1'}}}),
        _entry('kube-controller-manager', {'status': obj['status']}, subresource='status'),
    ]
    return obj


def template() -> bytes:
    """
    The prototype as list-item bytes without the opening brace, kind and apiVersion.

    A LIST item is ``b'{' + tail`` (items carry no kind/apiVersion, as kube-apiserver's
    lists); a watch event's object is ``{"kind":...,"apiVersion":...,`` + tail.
    Placeholders: ``rv`` (string), ``upd``/``ready``/``avail`` (integers), ``t`` (time).
    """
    obj = prototype()
    del obj['kind'], obj['apiVersion']
    obj['metadata']['resourceVersion'] = '__RV__'
    obj['metadata']['managedFields'][-1]['time'] = '__T__'
    for field, placeholder in zip(STATUS_FIELDS, ('__UPD__', '__READY__', '__AVAIL__'), strict=True):
        obj['status'][field] = placeholder
    progressing = obj['status']['conditions'][-1]
    progressing['lastUpdateTime'] = '__T__'
    text = json.dumps(obj, separators=(',', ':')).replace('%', '%%')
    for placeholder, format_ in (('"__RV__"', '"%(rv)s"'), ('"__T__"', '"%(t)s"'), ('"__UPD__"', '%(upd)d'),
                                 ('"__READY__"', '%(ready)d'), ('"__AVAIL__"', '%(avail)d')):
        assert placeholder in text, placeholder
        text = text.replace(placeholder, format_)
    assert text.startswith('{')
    return text[1:].encode()


def personalise(tail: bytes, *, name: str, namespace: str, uid: str) -> bytes:
    """One object's template: the prototype's with its own identity."""
    return (tail.replace(NAME.encode(), name.encode()).replace(NAMESPACE.encode(), namespace.encode())
            .replace(UID.encode(), uid.encode()))


def render(tail: bytes, *, rv: int, step: int, time: str) -> bytes:
    """The object's tail at a resourceVersion and rollout step (0 is the rolled-out state)."""
    updated, ready, available = ROLLOUT[step % len(ROLLOUT) - 1]
    return tail % {b'rv': str(rv).encode(), b'upd': updated, b'ready': ready, b'avail': available,
                   b't': time.encode()}
