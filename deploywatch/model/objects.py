"""
What deploywatch prints of a Deployment: a cleaned copy and a short summary.

Both functions take the object exactly as the API server sent it and must never
raise: a Deployment is user input (a status may be missing, a map may be
``null``, a list may hold strings), and one odd object must not stop the stream
for all the others. So every lookup tolerates the wrong type and falls back to
what the API would have defaulted.
"""
import functools
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import orjson

from deploywatch.base import encoding

REDACTED = '<redacted>'
LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration'
CONTAINER_LISTS = ('initContainers', 'containers', 'ephemeralContainers')


def clean(raw: Mapping[str, Any], *, redact: bool, applied: str | None = None) -> dict[str, Any]:
    """
    The object without ``metadata.managedFields`` and, if asked, without env values.

    managedFields is server-side-apply bookkeeping, often larger than the rest, and
    changes on every write. Only literal ``env[].value`` strings are redacted:
    ``valueFrom`` names where a value lives, not the value. ``kubectl apply`` keeps the
    applied manifest, env values included, in the last-applied annotation: it is redacted
    the same way and kept as JSON, or replaced whole if it does not parse as an object.
    ``applied``, if given, is that annotation already redacted (the tracker's, while the
    raw annotation is unchanged: :func:`applied_digest`).

    Only the maps and lists on the way to what is removed or redacted are copied; the
    rest is shared with ``raw``. That is safe because nothing changes an object once it
    is parsed (not Kopf, not deploywatch), and a deep copy per event is costly.
    """
    obj = dict(raw)
    metadata = obj.get('metadata')
    if isinstance(metadata, dict) and 'managedFields' in metadata:
        obj['metadata'] = metadata = {key: value for key, value in metadata.items() if key != 'managedFields'}
    if not redact:
        return obj
    annotations = metadata.get('annotations') if isinstance(metadata, dict) else None
    if isinstance(metadata, dict) and isinstance(annotations, dict) and LAST_APPLIED in annotations:
        if applied is None:
            applied = _redacted_manifest(annotations[LAST_APPLIED])
        if applied != annotations[LAST_APPLIED]:
            obj['metadata'] = {**metadata, 'annotations': {**annotations, LAST_APPLIED: applied}}
    pod_spec = _redacted_pod_spec(_dig(obj, 'spec', 'template', 'spec'))
    if pod_spec is not None:
        spec, template = obj['spec'], obj['spec']['template']
        obj['spec'] = {**spec, 'template': {**template, 'spec': pod_spec}}
    return obj


def _redacted_pod_spec(pod_spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """
    A copy of the pod spec with its containers' env values redacted; None if it has none.
    One pass, looking and copying together: every listed Deployment is cleaned twice (the
    object, and the manifest in its last-applied annotation).
    """
    redacted: dict[str, Any] | None = None
    for key in CONTAINER_LISTS:
        items = pod_spec.get(key)
        if not isinstance(items, list):
            continue
        copied: list[Any] | None = None
        for index, container in enumerate(items):
            env = container.get('env') if isinstance(container, dict) else None
            if not isinstance(env, list):
                continue
            values: list[Any] | None = None
            for at, item in enumerate(env):
                if isinstance(item, dict) and 'value' in item:
                    if values is None:
                        values = list(env)
                    values[at] = {**item, 'value': REDACTED}
            if values is None:
                continue
            if copied is None:
                copied = list(items)
            copied[index] = {**container, 'env': values}
        if copied is not None:
            redacted = dict(pod_spec) if redacted is None else redacted
            redacted[key] = copied
    return redacted


def applied_digest(raw: Mapping[str, Any]) -> bytes | None:
    """
    A digest of the raw last-applied annotation (None: there is none, or it is not text).

    The annotation changes only when someone applies again but arrives with every status
    write, and redacting it (parse, redact, encode) is costly; :func:`_redacted_applied`'s
    cache cannot hold one per Deployment of a large cluster. The tracker keeps this digest
    (16 bytes of BLAKE2b: two different annotations never pass for the same) and, while it
    stays the same, reuses the redacted annotation it printed before.
    """
    metadata = raw.get('metadata')
    annotations = metadata.get('annotations') if isinstance(metadata, dict) else None
    value = annotations.get(LAST_APPLIED) if isinstance(annotations, dict) else None
    if not isinstance(value, str):
        return None
    return hashlib.blake2b(value.encode('utf-8', 'surrogatepass'), digest_size=16).digest()


def last_applied(obj: Mapping[str, Any]) -> str | None:
    """The last-applied annotation of a (cleaned) object, if it is text."""
    metadata = obj.get('metadata')
    annotations = metadata.get('annotations') if isinstance(metadata, dict) else None
    value = annotations.get(LAST_APPLIED) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) else None


def _redacted_manifest(value: Any) -> Any:
    """The last-applied manifest with its env values redacted, still JSON; unparsable: replaced."""
    return _redacted_applied(value) if isinstance(value, str) else REDACTED


@functools.lru_cache(maxsize=256)
def _redacted_applied(value: str) -> str:
    """Cached: the annotation changes only when someone applies again, but arrives with every status write."""
    try:  # exactly (encoding.loads): an integer beyond 64 bits must not come back as a float
        manifest = encoding.loads(value.encode())
    except ValueError:  # not JSON; or a lone surrogate, which UTF-8 cannot carry
        return REDACTED
    if not isinstance(manifest, dict):
        return REDACTED
    redacted = clean(manifest, redact=True)
    spec, annotations = redacted.get('spec'), _dig(redacted, 'metadata').get('annotations')
    if spec is manifest.get('spec') and annotations is _dig(manifest, 'metadata').get('annotations'):
        return value  # no values, nor in a last-applied annotation of its own: the text as kubectl wrote it
    ending = '\n' if value.endswith('\n') else ''  # kubectl ends it with one
    try:  # orjson writes what json.dumps(..., separators=(',', ':'), ensure_ascii=False) does, faster
        text = orjson.dumps(redacted).decode()
    except TypeError:  # lone surrogates, integers beyond 64 bits: orjson refuses, the standard library writes
        text = json.dumps(redacted, separators=(',', ':'), ensure_ascii=False)
    return text + ending


def summarize(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The few numbers a person or a jq filter looks at first, with API defaults filled in."""
    spec = _dig(obj, 'spec')
    status = _dig(obj, 'status')
    metadata = _dig(obj, 'metadata')
    pod_spec = _dig(obj, 'spec', 'template', 'spec')
    return {
        'replicas': _count(spec.get('replicas'), default=1),
        'readyReplicas': _count(status.get('readyReplicas')),
        'updatedReplicas': _count(status.get('updatedReplicas')),
        'availableReplicas': _count(status.get('availableReplicas')),
        'terminatingReplicas': _optional_count(status.get('terminatingReplicas')),
        'images': [
            container['image'] for container in _dicts(pod_spec.get('containers'))
            if isinstance(container.get('image'), str)
        ],
        'generation': _count(metadata.get('generation')),
        'observedGeneration': _count(status.get('observedGeneration')),
        'paused': spec.get('paused') is True,
    }


def _dig(obj: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    """Follow nested maps; anything that is not a map on the way counts as empty."""
    current: Any = obj
    for key in keys:
        current = current.get(key) if isinstance(current, dict) else None
    return current if isinstance(current, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _count(value: Any, *, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _optional_count(value: Any) -> int | None:
    """A count the server may not keep at all: ``None`` says "not counted", which 0 would not."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
