"""
The three PATCH flavours kube-apiserver accepts, as far as Deployments need them.

* ``application/merge-patch+json``: RFC 7386, maps merge, ``null`` deletes, lists
  are replaced whole.
* ``application/strategic-merge-patch+json`` (kubectl's and the Python client's
  default): like a merge patch, except that lists of maps with a patch merge key
  (containers by ``name``, ports by ``containerPort``, ...) are merged item by
  item. Directives (``$patch``, ``$retainKeys``, ``$setElementOrder``) are not
  emulated: requests carrying them are refused with 415 rather than misapplied.
* ``application/json-patch+json``: RFC 6902 (add, remove, replace, test).
"""
import copy
import json
from typing import Any

from deploywatch.testing.errors import ApiError

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


def apply(target: Any, patch: Any, content_type: str) -> Any:
    media_type = content_type.split(';', maxsplit=1)[0].strip()
    if media_type == MERGE:
        return merge(target, patch, strategic=False)
    if media_type == STRATEGIC:
        if '$' in json.dumps(patch):
            raise ApiError.unsupported_media_type(content_type + ' with directives')
        return merge(target, patch, strategic=True)
    if media_type == JSON_PATCH:
        return json_patch(target, patch)
    raise ApiError.unsupported_media_type(content_type)


def merge(target: Any, patch: Any, *, strategic: bool, key: str = '') -> Any:
    if not isinstance(patch, dict):
        if strategic and isinstance(patch, list) and isinstance(target, list) and key in MERGE_KEYS:
            return _merge_list(target, patch, MERGE_KEYS[key])
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge(result.get(name), value, strategic=strategic, key=name)
    return result


def _merge_list(target: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    result = copy.deepcopy(target)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise ApiError.bad_request(f'map in list is missing its merge key {merge_key!r}')
        for index, existing in enumerate(result):
            if isinstance(existing, dict) and existing.get(merge_key) == item[merge_key]:
                result[index] = merge(existing, item, strategic=True)
                break
        else:
            result.append(copy.deepcopy(item))
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
