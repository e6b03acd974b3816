"""
Errors as kube-apiserver reports them: an HTTP code and a ``Status`` body.

The messages follow the recorded bodies (``forbidden-create.json``, ``v1.*/forbidden-*.json``,
``not-found.json``, ``conflict.json``, ``list-too-old-410.json``) word for word,
because clients, Kopf included, log them and sometimes match on them.
"""
from typing import Any

from deploywatch.testing.kinds import ResourceType


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            'kind': 'Status', 'apiVersion': 'v1', 'metadata': {},
            'status': 'Failure', 'message': self.message,
        }
        if self.reason:  # an internal error (500) of the apiserver has none
            body['reason'] = self.reason
        if self.details is not None:
            body['details'] = self.details
        body['code'] = self.code
        return body

    @classmethod
    def not_found(cls, resource: ResourceType, name: str) -> 'ApiError':
        return cls(404, 'NotFound', f'{resource.qualified} "{name}" not found',
                   {'name': name, 'group': resource.group, 'kind': resource.plural})

    @classmethod
    def no_such_path(cls) -> 'ApiError':
        return cls(404, 'NotFound', 'the server could not find the requested resource', {})

    @classmethod
    def already_exists(cls, resource: ResourceType, name: str) -> 'ApiError':
        return cls(409, 'AlreadyExists', f'{resource.qualified} "{name}" already exists',
                   {'name': name, 'group': resource.group, 'kind': resource.plural})

    @classmethod
    def conflict(cls, resource: ResourceType, name: str) -> 'ApiError':
        return cls(409, 'Conflict',
                   f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object '
                   'has been modified; please apply your changes to the latest version and try again',
                   {'name': name, 'group': resource.group, 'kind': resource.plural})

    @classmethod
    def forbidden(cls, resource: ResourceType | None, *, user: str, verb: str, plural: str,
                  group: str, namespace: str | None, name: str | None) -> 'ApiError':
        qualified = resource.qualified if resource is not None else plural
        scope = f'in the namespace "{namespace}"' if namespace else 'at the cluster scope'
        details: dict[str, Any] = {'name': name} if name else {}
        details.update({'group': group, 'kind': plural.split('/', maxsplit=1)[0]})
        named = f'{qualified} "{name}"' if name else qualified  # as forbidden-get.json words it
        return cls(403, 'Forbidden',
                   f'{named} is forbidden: User "{user}" cannot {verb} resource '
                   f'"{plural}" in API group "{group}" {scope}', details)

    @classmethod
    def injected(cls, code: int, resource: ResourceType, *, user: str, verb: str,
                 namespace: str | None) -> 'ApiError':
        """An error a test armed (``faults.Faults.answer``), worded as the real server words it."""
        if code == 403:
            return cls.forbidden(resource, user=user, verb=verb, plural=resource.plural,
                                 group=resource.group, namespace=namespace, name=None)
        if code == 429:
            return cls(429, 'TooManyRequests', 'Too many requests, please try again later.',
                       {'retryAfterSeconds': 1}, headers={'Retry-After': '1'})
        if code == 503:
            return cls(503, 'ServiceUnavailable', 'the server is currently unable to handle the request')
        if code == 410:  # a watch from a resourceVersion the history no longer holds, as an HTTP answer
            return cls.expired_watch(1, 2)
        if code == 504:  # a resourceVersion ahead of the server (etcd restored from a backup)
            return cls.too_large_version(999999999, 3946)
        return cls(code, 'InternalError',
                   'Internal error occurred: injected by the test (etcdserver: request timed out)')

    @classmethod
    def unauthorized(cls) -> 'ApiError':
        return cls(401, 'Unauthorized', 'Unauthorized')

    @classmethod
    def expired_list(cls) -> 'ApiError':
        return cls(410, 'Expired', 'The resourceVersion for the provided list is too old.')

    @classmethod
    def expired_continue(cls) -> 'ApiError':
        return cls(410, 'Expired',
                   'The provided continue parameter is too old to display a consistent list '
                   'result. You can start a new list without the continue parameter.')

    @classmethod
    def expired_watch(cls, requested: int, oldest: int) -> 'ApiError':
        return cls(410, 'Expired', f'too old resource version: {requested} ({oldest})')

    @classmethod
    def too_large_version(cls, requested: int, current: int) -> 'ApiError':
        """As kube-apiserver v1.24 answers a LIST with a resourceVersion it has not reached yet."""
        cause = {'reason': 'ResourceVersionTooLarge', 'message': 'Too large resource version'}
        return cls(504, 'Timeout', f'Timeout: Too large resource version: {requested}, current: {current}',
                   {'causes': [cause], 'retryAfterSeconds': 1})

    @classmethod
    def bad_request(cls, message: str) -> 'ApiError':
        return cls(400, 'BadRequest', message)

    @classmethod
    def unprocessable(cls, message: str) -> 'ApiError':
        return cls(422, 'Invalid', message)

    @classmethod
    def unsupported_media_type(cls, what: str) -> 'ApiError':
        return cls(415, 'UnsupportedMediaType', f'the body of the request was in an unknown format: {what}')

    @classmethod
    def method_not_allowed(cls) -> 'ApiError':
        return cls(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
