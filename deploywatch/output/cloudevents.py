"""
The CloudEvents format (``DEPLOYWATCH_FORMAT=cloudevents``): each event as one CloudEvents 1.0 JSON object.

Knative's ApiServerSource, Argo Events, Azure Event Grid and most event routers
take CloudEvents, and their JSON format in *structured mode* (the whole event, its
attributes and its data, in one JSON object) fits a line-per-event stream as is:
a consumer reads one line and has the envelope its router wants. So this is an
encoder beside ``text``, for ``output.LineWriter``, and nothing else changes: the
event (already shaped by ``DEPLOYWATCH_TYPES``, ``_OLD``, ``_OBJECT``) becomes
``data``, whole, and the attributes are read from it:

* ``id``: the event's ``id`` (stable per change, see ``deploywatch.model.ids``); with
  ``source``, what CloudEvents consumers de-duplicate on;
* ``source``: a URI reference naming the cluster and the Deployment's API path,
  ``//<cluster>/apis/apps/v1/namespaces/<namespace>/deployments/<name>`` (a
  network-path reference: the cluster as its authority); without
  ``DEPLOYWATCH_CLUSTER``, the path alone. Namespace and name are
  percent-encoded, so that no value from the cluster can break the URI;
* ``type``: ``dev.deploywatch.deployment.added`` (``.modified``, ``.deleted``,
  ``.resync``): reverse-DNS, as the specification recommends;
* ``subject``: ``namespace/name``, what a subscriber filters on;
* ``time``: when deploywatch observed it (the event's ``time``);
* ``datacontenttype`` ``application/json``, ``dataschema`` the v1 JSON Schema's
  ``$id``.

Nothing here depends on the CloudEvents SDK: the format is a few attributes, and
the operator's dependencies stay few; the tests read every line with the SDK.
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
