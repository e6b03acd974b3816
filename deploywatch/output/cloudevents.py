"""
The CloudEvents format (``DEPLOYWATCH_FORMAT=cloudevents``): each event as one CloudEvents 1.0 JSON object.

Knative, Argo Events and most event routers take CloudEvents, and the JSON format's
*structured mode* (attributes and data in one object) fits a line per event as is. So
this is one more line encoder beside ``text``: the event, already shaped, becomes
``data`` whole, and the attributes are read from it: ``id`` (stable per change,
``deploywatch.model.ids``: with ``source``, what consumers de-duplicate on), ``source``
(``//<cluster>`` if named, then the Deployment's API path, namespace and name
percent-encoded so no value from the cluster breaks the URI), ``type``
(``dev.deploywatch.deployment.<type>``), ``subject`` (``namespace/name``), ``time``,
``dataschema`` (the v1 schema's ``$id``). No CloudEvents SDK at run time: the format is
a few attributes; the tests read every line with the SDK.
"""
import urllib.parse
from collections.abc import Mapping
from typing import Any

from deploywatch.output import jsonl

SPEC_VERSION = '1.0'
TYPE_PREFIX = 'dev.deploywatch.deployment.'
DATA_SCHEMA = 'https://deploywatch.dev/schema/event-v1.json'  # the schema's $id
API_PATH = '/apis/apps/v1/namespaces/{namespace}/deployments/{name}'


def source(event: Mapping[str, Any]) -> str:
    """The ``source`` attribute: the cluster (if named) and the Deployment's API path."""
    path = API_PATH.format(namespace=_segment(event.get('namespace')), name=_segment(event.get('name')))
    cluster = event.get('cluster')
    return f'//{_segment(cluster)}{path}' if isinstance(cluster, str) and cluster else path


def envelope(event: Mapping[str, Any]) -> dict[str, Any]:
    """The CloudEvent (structured mode, JSON format) carrying one deploywatch event as ``data``."""
    return {
        'specversion': SPEC_VERSION,
        'id': str(event.get('id') or ''),
        'source': source(event),
        'type': TYPE_PREFIX + str(event.get('type', '')).lower(),
        'subject': f"{event.get('namespace')}/{event.get('name')}",
        'time': event.get('time'),
        'datacontenttype': 'application/json',
        'dataschema': DATA_SCHEMA,
        'data': event,
    }


def encode(event: Mapping[str, Any]) -> bytes:
    """One line: the envelope as UTF-8 JSON, by the JSON format's own encoder."""
    return jsonl.encode(envelope(event))


def _segment(value: Any) -> str:
    return urllib.parse.quote(value if isinstance(value, str) else str(value), safe='')
