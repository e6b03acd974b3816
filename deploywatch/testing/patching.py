"""
The three PATCH flavours kube-apiserver accepts, as far as Deployments need them.

* ``application/merge-patch+json``: RFC 7386, maps merge, ``null`` deletes, lists
  are replaced whole.
* ``application/strategic-merge-patch+json`` (kubectl's and the Python client's
  default): like a merge patch, except that lists of maps with a patch merge key
  (containers by ``name``, ports by ``containerPort``, ...) are merged item by
  item, and ``metadata.finalizers`` (patch strategy merge) is a union. The
  directives kubectl sends are applied: ``$setElementOrder/<list>`` (every
  ``kubectl apply`` and ``kubectl set image`` of a Deployment sends one:
  ``v1.*/apply-update.json``, ``v1.*/set-image.json``) orders the merged list,
  items it names first, in its order, then the others as they were (the real
  server interleaves those by their old neighbours; nothing here depends on
  it); ``$patch: delete`` removes a list item or a map, ``$patch: replace``
  replaces a map, ``$retainKeys`` drops the members it does not list,
  ``$deleteFromPrimitiveList/<list>`` removes values. Any other directive is
  refused with 415 rather than misapplied.
* ``application/json-patch+json``: RFC 6902 (add, remove, replace, test).
"""
import copy
from typing import Any

from deploywatch.testing.errors import ApiError

Obj = dict[str, Any]

MERGE = 'application/merge-patch+json'
STRATEGIC = 'application/strategic-merge-patch+json'
JSON_PATCH = 'application/json-patch+json'

# The patch merge keys of the lists a Deployment has (k8s.io/api struct tags).
MERGE_KEYS = {
    'containers': 'name', 'initContainers': 'name', 'ephemeralContainers': 'name',
    'env': 'name', 'ports': 'containerPort', 'volumeMounts': 'mountPath',
    'volumeDevices': 'devicePath', 'volumes': 'name', 'imagePullSecrets': 'name',
    'conditions': 'type', 'tolerations': 'key', 'hostAliases': 'ip',
}
# Lists of scalars with patch strategy merge: a strategic merge patch adds to them.
MERGED_PRIMITIVE_LISTS = frozenset({'finalizers'})


def apply(target: Any, patch: Any, content_type: str) -> Any:
    media_type = content_type.split(';', maxsplit=1)[0].strip()
    if media_type == MERGE:
        return merge(target, patch, strategic=False)
    if media_type == STRATEGIC:
        return merge(target, patch, strategic=True)
    if media_type == JSON_PATCH:
        return json_patch(target, patch)
    raise ApiError.unsupported_media_type(content_type)


def merge(target: Any, patch: Any, *, strategic: bool, key: str = '') -> Any:
    if not isinstance(patch, dict):
        if strategic and isinstance(patch, list) and isinstance(target, list):
            if key in MERGE_KEYS:
                return _merge_list(target, patch, MERGE_KEYS[key])
            if key in MERGED_PRIMITIVE_LISTS:
                return [*target, *(item for item in patch if item not in target)]
        return copy.deepcopy(patch)
    if strategic:
        return _merge_strategic(target, patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge(result.get(name), value, strategic=strategic, key=name)
    return result


def _merge_strategic(target: Any, patch: Obj) -> Any:
    directive = patch.get('$patch')
    if directive == 'replace':
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != '$patch'}
    if directive == 'delete':
        return None
    if directive not in (None, 'merge'):
        raise ApiError.unsupported_media_type(f'{STRATEGIC} with $patch: {directive}')
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    orders: dict[str, Any] = {}
    for name, value in patch.items():
        if name.startswith('$setElementOrder/'):
            orders[name.partition('/')[2]] = value
        elif name.startswith('$deleteFromPrimitiveList/'):
            field = name.partition('/')[2]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [item for item in result[field] if item not in value]
        elif name in ('$patch', '$retainKeys'):
            continue
        elif name.startswith('$'):
            raise ApiError.unsupported_media_type(f'{STRATEGIC} with {name}')
        elif value is None:
            result.pop(name, None)
        else:
            merged = merge(result.get(name), value, strategic=True, key=name)
            if merged is None:
                result.pop(name, None)
            else:
                result[name] = merged
    for field, order in orders.items():
        if isinstance(result.get(field), list) and isinstance(order, list):
            result[field] = _ordered(result[field], order, MERGE_KEYS.get(field))
    retain = patch.get('$retainKeys')
    if isinstance(retain, list):
        result = {name: value for name, value in result.items() if name in retain}
    return result


def _ordered(items: list[Any], order: list[Any], merge_key: str | None) -> list[Any]:
    """A merged list as ``$setElementOrder`` wants it: the named items in its order, then the rest."""
    def identity(item: Any) -> Any:
        return item.get(merge_key) if merge_key and isinstance(item, dict) else item
    wanted = [identity(item) for item in order]
    named = sorted((item for item in items if identity(item) in wanted),
                   key=lambda item: wanted.index(identity(item)))
    return named + [item for item in items if identity(item) not in wanted]


def _merge_list(target: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    result = copy.deepcopy(target)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise ApiError.bad_request(f'map in list is missing its merge key {merge_key!r}')
        for index, existing in enumerate(result):
            if isinstance(existing, dict) and existing.get(merge_key) == item[merge_key]:
                merged = merge(existing, item, strategic=True)
                if merged is None:  # $patch: delete
                    del result[index]
                else:
                    result[index] = merged
                break
        else:
            if item.get('$patch') != 'delete':
                result.append(merge(None, item, strategic=True))
    return result


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise ApiError.bad_request('a JSON patch must be a list of operations')
    document = copy.deepcopy(target)
    for operation in operations:
        op, path = operation.get('op'), operation.get('path', '')
        tokens = [t.replace('~1', '/').replace('~0', '~') for t in path.split('/')[1:]]
        if not tokens:
            raise ApiError.unprocessable('replacing the whole object is not allowed')
        parent = document
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent.get(token)
            if parent is None:
                raise ApiError.unprocessable(f'doc is missing path: {path!r}')
        last = tokens[-1]
        if op == 'test':
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != operation.get('value'):
                raise ApiError.unprocessable(f'testing value {path!r} failed')
        elif op == 'remove':
            del parent[int(last) if isinstance(parent, list) else last]
        elif op in ('add', 'replace'):
            value = copy.deepcopy(operation.get('value'))
            if isinstance(parent, list):
                if op == 'add':
                    parent.insert(len(parent) if last == '-' else int(last), value)
                else:
                    parent[int(last)] = value
            else:
                parent[last] = value
        else:
            raise ApiError.unsupported_media_type(f'json-patch op {op!r}')
    return document
