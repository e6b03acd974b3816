"""
Custom resources validated as an API server with strict field validation would.

A CRD's ``openAPIV3Schema`` lists the fields an object may have, but says nothing of the
others: the API server prunes unknown fields (or, with ``kubectl apply --validate=strict``,
refuses them), which JSON Schema alone does not do. :func:`strict` closes every object
schema that lists its properties and does not keep unknown fields
(``x-kubernetes-preserve-unknown-fields``), so a misspelt field fails the validation here
as ``kubernetes-validate --strict`` makes it fail for built-in kinds.

The CRDs are those the built manifests carry (Kopf's peering) and the Prometheus
Operator's as it publishes them, stored in ``crds/`` (its README says which release).
Their patterns are Go's (RE2) regular expressions; the one construct of them that Python
reads otherwise, an inline flag after the start (``^(?i)(abort|warn)?$``), is moved to
the start, where it means the same.
"""
import copy
import functools
import pathlib
import re
from typing import Any

import jsonschema
import yaml

CRDS = pathlib.Path(__file__).resolve().parent / 'crds'
ROOT_FIELDS = ('apiVersion', 'kind', 'metadata')  # every object has them, whatever its schema says

Obj = dict[str, Any]


@functools.cache
def _published() -> tuple[Obj, ...]:
    return tuple(yaml.safe_load(path.read_text()) for path in sorted(CRDS.glob('*.yaml')))


def published() -> list[Obj]:
    """The stored CRDs of the Prometheus Operator (a fresh copy)."""
    return copy.deepcopy(list(_published()))


def by_kind(crds: list[Obj]) -> dict[tuple[str, str], Obj]:
    """``(group, kind)`` to CRD, as ``apiVersion``'s group and ``kind`` name them."""
    return {(crd['spec']['group'], crd['spec']['names']['kind']): crd for crd in crds}


def schema_of(crd: Obj) -> Obj:
    """The ``openAPIV3Schema`` of the CRD's storage version."""
    (version,) = [v for v in crd['spec']['versions'] if v['storage']]
    schema: Obj = version['schema']['openAPIV3Schema']
    return schema


def strict(schema: Obj, *, root: bool = True) -> Obj:
    """A copy of ``schema`` that refuses fields it does not list."""
    closed = {key: value for key, value in schema.items()}
    if 'pattern' in schema:
        closed['pattern'] = _python_pattern(schema['pattern'])
    if 'properties' in schema:
        closed['properties'] = {name: strict(sub, root=False) for name, sub in schema['properties'].items()}
        if root:
            closed['properties'] = {**{name: {} for name in ROOT_FIELDS}, **closed['properties']}
        if 'additionalProperties' not in schema and not schema.get('x-kubernetes-preserve-unknown-fields'):
            closed['additionalProperties'] = False
    if isinstance(schema.get('additionalProperties'), dict):
        closed['additionalProperties'] = strict(schema['additionalProperties'], root=False)
    if 'items' in schema:
        closed['items'] = strict(schema['items'], root=False)
    for combinator in ('anyOf', 'allOf', 'oneOf'):
        if combinator in schema:
            closed[combinator] = [strict(sub, root=False) for sub in schema[combinator]]
    return closed


def _python_pattern(pattern: str) -> str:
    """An RE2 pattern as Python's ``re`` reads it: leading inline flags first (Python refuses them later)."""
    match = re.fullmatch(r'(\^?)\(\?([a-z]+)\)(.*)', pattern, flags=re.DOTALL)
    return f'(?{match[2]}){match[1]}{match[3]}' if match else pattern


def validate(doc: Obj, crd: Obj) -> None:
    """Raise :class:`jsonschema.ValidationError` unless ``doc`` is valid, strictly, for ``crd``."""
    jsonschema.validate(doc, strict(schema_of(crd)))
