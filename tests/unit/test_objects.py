"""objects.clean and objects.summarize: what is printed of a Deployment, hostile ones included."""
import copy
import datetime
import functools
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploywatch.model import events, objects
from deploywatch.model.events import EventType
from deploywatch.output.jsonl import encode
from tests import builders
from tests.harness.schema import VALIDATOR

SUMMARY_TYPES: dict[str, type | tuple[type, ...]] = {
    'replicas': int, 'readyReplicas': int, 'updatedReplicas': int, 'availableReplicas': int,
    'terminatingReplicas': (int, type(None)), 'images': list, 'generation': int, 'observedGeneration': int,
    'paused': bool,
}
MOMENT = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)


deployment = functools.partial(
    builders.deployment, rv='7', generation=3, managed_fields=[{'manager': 'kubectl', 'operation': 'Update'}],
    replicas=2, pod={},
    status={'readyReplicas': 1, 'updatedReplicas': 2, 'availableReplicas': 1, 'observedGeneration': 3})


def env(*variables: dict[str, Any]) -> list[dict[str, Any]]:
    return list(variables)


SECRET = {'name': 'PASSWORD', 'value': 's3cr3t'}
FROM_SECRET = {'name': 'TOKEN', 'valueFrom': {'secretKeyRef': {'name': 'api', 'key': 'token'}}}


def assert_summary_types(summary: dict[str, Any]) -> None:
    assert list(summary) == list(SUMMARY_TYPES)
    for name, kind in SUMMARY_TYPES.items():
        assert type(summary[name]) in (kind if isinstance(kind, tuple) else (kind,)), name
    assert all(isinstance(image, str) for image in summary['images'])


def assert_every_event_is_valid(raw: dict[str, Any]) -> None:
    obj = objects.clean(raw, redact=True)
    for kind in EventType:
        old = obj if kind is EventType.MODIFIED else None
        initial = True if kind is EventType.ADDED else None
        event = events.build(type=kind, obj=obj, observed=MOMENT, initial=initial, old=old)
        VALIDATOR.validate(event)
        assert json.loads(encode(event)) == json.loads(json.dumps(event))


# clean

def test_clean_removes_managed_fields_and_keeps_the_rest() -> None:
    raw = deployment(pod={'containers': [{'name': 'app', 'image': 'nginx'}]})
    cleaned = objects.clean(raw, redact=True)
    assert 'managedFields' not in cleaned['metadata']
    expected = copy.deepcopy(raw)
    del expected['metadata']['managedFields']
    assert cleaned == expected


@pytest.mark.parametrize('kind', ['containers', 'initContainers', 'ephemeralContainers'])
def test_clean_redacts_env_values_in_every_kind_of_container(kind: str) -> None:
    raw = deployment(pod={kind: [{'name': 'c', 'env': env({'name': 'A', 'value': 'plain'}, SECRET)}]})
    cleaned = objects.clean(raw, redact=True)
    variables = cleaned['spec']['template']['spec'][kind][0]['env']
    assert variables == [{'name': 'A', 'value': '<redacted>'}, {'name': 'PASSWORD', 'value': '<redacted>'}]
    assert 's3cr3t' not in json.dumps(cleaned)


def test_clean_redacts_every_container_not_just_the_first() -> None:
    raw = deployment(pod={'containers': [{'name': f'c{i}', 'env': env(dict(SECRET))} for i in range(3)],
                          'initContainers': [{'name': 'init', 'env': env(dict(SECRET))}]})
    cleaned = objects.clean(raw, redact=True)
    assert 's3cr3t' not in json.dumps(cleaned)
    assert json.dumps(cleaned).count('<redacted>') == 4


def test_clean_keeps_value_from_references() -> None:
    raw = deployment(pod={'containers': [{'name': 'app', 'env': env(SECRET, FROM_SECRET)}]})
    cleaned = objects.clean(raw, redact=True)
    assert cleaned['spec']['template']['spec']['containers'][0]['env'][1] == FROM_SECRET


def test_clean_without_redaction_keeps_the_values() -> None:
    raw = deployment(pod={'containers': [{'name': 'app', 'env': env(SECRET, FROM_SECRET)}]})
    cleaned = objects.clean(raw, redact=False)
    assert cleaned['spec']['template']['spec']['containers'][0]['env'] == [SECRET, FROM_SECRET]
    assert 'managedFields' not in cleaned['metadata']


def test_clean_does_not_mutate_its_input() -> None:
    raw = deployment(pod={'containers': [{'name': 'app', 'env': env(dict(SECRET))}]})
    before = copy.deepcopy(raw)
    cleaned = objects.clean(raw, redact=True)
    assert raw == before
    cleaned['spec']['template']['spec']['containers'][0]['image'] = 'changed'
    cleaned['metadata']['labels'] = {'x': 'y'}
    assert raw == before  # a deep copy, not a shallow one


def test_clean_tolerates_odd_env_entries() -> None:
    raw = deployment(pod={'containers': [
        {'name': 'a', 'env': 'not a list'},
        {'name': 'b', 'env': ['a string', None, 5, {'name': 'X', 'value': None}, {'name': 'Y'}]},
        'not a container',
    ]})
    cleaned = objects.clean(raw, redact=True)
    containers = cleaned['spec']['template']['spec']['containers']
    assert containers[0]['env'] == 'not a list'
    assert containers[1]['env'] == ['a string', None, 5, {'name': 'X', 'value': '<redacted>'}, {'name': 'Y'}]
    assert containers[2] == 'not a container'


# summarize

def test_summarize_reads_all_nine_fields() -> None:
    raw = deployment(pod={'containers': [{'name': 'a', 'image': 'nginx:1'},
                                         {'name': 'b', 'image': 'envoy:2'}]})
    raw['spec']['paused'] = True
    raw['status']['terminatingReplicas'] = 1
    assert objects.summarize(raw) == {
        'replicas': 2, 'readyReplicas': 1, 'updatedReplicas': 2, 'availableReplicas': 1,
        'terminatingReplicas': 1,
        'images': ['nginx:1', 'envoy:2'], 'generation': 3, 'observedGeneration': 3, 'paused': True,
    }


@pytest.mark.parametrize(('value', 'expected'), [(0, 0), (None, None), ('1', None), (True, None)])
def test_summarize_terminating_replicas_null_where_the_server_does_not_count(value: Any,
                                                                             expected: int | None) -> None:
    raw = deployment()
    raw['status']['terminatingReplicas'] = value
    assert objects.summarize(raw)['terminatingReplicas'] == expected
    del raw['status']['terminatingReplicas']  # v1.34: the field is not there at all
    assert objects.summarize(raw)['terminatingReplicas'] is None


def test_summarize_of_an_empty_object_gives_the_api_defaults() -> None:
    assert objects.summarize({}) == {
        'replicas': 1, 'readyReplicas': 0, 'updatedReplicas': 0, 'availableReplicas': 0,
        'terminatingReplicas': None, 'images': [], 'generation': 0, 'observedGeneration': 0, 'paused': False,
    }


def test_summarize_replicas_zero_is_not_the_default() -> None:
    raw = deployment()
    raw['spec']['replicas'] = 0
    assert objects.summarize(raw)['replicas'] == 0


def test_summarize_images_only_from_regular_containers() -> None:
    raw = deployment(pod={'containers': [{'name': 'a', 'image': 'app:1'}, {'name': 'b'},
                                         {'name': 'c', 'image': 5}],
                          'initContainers': [{'name': 'i', 'image': 'init:1'}]})
    assert objects.summarize(raw)['images'] == ['app:1']


def _without_status(raw: dict[str, Any]) -> dict[str, Any]:
    del raw['status']
    return raw


def _set(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split('.')
    node = raw
    for key in parents:
        node = node[key]
    node[last] = value
    return raw


def _deep(depth: int) -> Any:
    value: Any = 'bottom'
    for index in range(depth):
        value = {'n': value} if index % 2 else [value]
    return value


HOSTILE: dict[str, Callable[[], dict[str, Any]]] = {
    'no status': lambda: _without_status(deployment()),
    'status null': lambda: _set(deployment(), 'status', None),
    'status a list': lambda: _set(deployment(), 'status', [1, 2]),
    'spec null': lambda: _set(deployment(), 'spec', None),
    'template null': lambda: _set(deployment(), 'spec.template', None),
    'metadata null': lambda: _set(deployment(), 'metadata', None),
    'metadata a string': lambda: _set(deployment(), 'metadata', 'web'),
    'containers null': lambda: deployment(pod={'containers': None}),
    'containers missing': deployment,
    'containers a string': lambda: deployment(pod={'containers': 'nginx'}),
    'containers a map': lambda: deployment(pod={'containers': {'name': 'app', 'image': 'nginx'}}),
    'containers strings': lambda: deployment(pod={'containers': ['nginx', 'envoy']}),
    '500 containers': lambda: deployment(
        pod={'containers': [{'name': f'c{i}', 'image': f'img:{i}', 'env': env(dict(SECRET))}
                            for i in range(500)]}),
    'env not a list': lambda: deployment(pod={'containers': [{'name': 'a', 'image': 'x',
                                                               'env': {'A': 'b'}}]}),
    'env null': lambda: deployment(pod={'containers': [{'name': 'a', 'image': 'x', 'env': None}]}),
    'replicas a string': lambda: _set(deployment(), 'spec.replicas', '3'),
    'replicas a bool': lambda: _set(deployment(), 'spec.replicas', True),
    'replicas a float': lambda: _set(deployment(), 'spec.replicas', 2.5),
    'replicas huge': lambda: _set(deployment(), 'spec.replicas', 2 ** 80),
    'paused a string': lambda: _set(deployment(), 'spec.paused', 'true'),
    'ready a bool': lambda: _set(deployment(), 'status.readyReplicas', False),
    'generation missing': lambda: _set(deployment(), 'metadata', {'name': 'web', 'namespace': 'ns'}),
    'generation null': lambda: _set(deployment(), 'metadata.generation', None),
    'name a number': lambda: _set(deployment(), 'metadata.name', 42),
    'uid a map': lambda: _set(deployment(), 'metadata.uid', {'a': 1}),
    'resourceVersion an int': lambda: _set(deployment(), 'metadata.resourceVersion', 7),
    'namespace a list': lambda: _set(deployment(), 'metadata.namespace', ['a']),
    '1 MiB annotation': lambda: _set(deployment(), 'metadata.annotations', {'big': 'x' * (1 << 20)}),
    'emoji and non-ASCII labels': lambda: _set(
        deployment(), 'metadata.labels', {'équipe': 'café', 'emoji': '🚀🔥', '名前': '値', 'rtl': 'שלום'}),
    'lone surrogate': lambda: _set(deployment(), 'metadata.labels', {'x': json.loads('"\\ud800"')}),
    'depth 200': lambda: _set(deployment(), 'spec.template.spec.extra', _deep(200)),
    'depth 200 in env': lambda: deployment(
        pod={'containers': [{'name': 'a', 'image': 'x', 'env': [{'name': 'A', 'value': _deep(200)}]}]}),
}


@pytest.mark.parametrize('name', sorted(HOSTILE))
def test_hostile_objects_never_raise_and_keep_the_types(name: str) -> None:
    raw = HOSTILE[name]()
    before = copy.deepcopy(raw)
    summary = objects.summarize(raw)
    assert_summary_types(summary)
    cleaned = objects.clean(raw, redact=True)
    assert isinstance(cleaned, dict)
    assert raw == before
    assert_every_event_is_valid(raw)


def test_hostile_values_fall_back_to_the_api_defaults() -> None:
    assert objects.summarize(_set(deployment(), 'spec.replicas', '3'))['replicas'] == 1
    assert objects.summarize(_set(deployment(), 'spec.replicas', True))['replicas'] == 1
    assert objects.summarize(_set(deployment(), 'spec.paused', 'true'))['paused'] is False
    assert objects.summarize(_set(deployment(), 'status', None))['readyReplicas'] == 0
    assert objects.summarize(_set(deployment(), 'metadata.generation', None))['generation'] == 0
    assert objects.summarize(deployment(pod={'containers': ['nginx']}))['images'] == []
    many = deployment(pod={'containers': [{'name': f'c{i}', 'image': f'img:{i}'} for i in range(500)]})
    assert objects.summarize(many)['images'] == [f'img:{i}' for i in range(500)]


def test_hostile_identity_fields_become_null_in_the_line_but_stay_in_the_object() -> None:
    raw = _set(deployment(), 'metadata.name', 42)
    obj = objects.clean(raw, redact=True)
    event = events.build(type=EventType.RESYNC, obj=obj, observed=MOMENT)
    assert event['name'] is None
    assert event['object']['metadata']['name'] == 42


def test_non_ascii_labels_survive_clean_and_summarize() -> None:
    labels = {'équipe': 'café', 'emoji': '🚀', '名前': '値'}
    cleaned = objects.clean(_set(deployment(), 'metadata.labels', labels), redact=True)
    assert cleaned['metadata']['labels'] == labels


# Property: any JSON object whatsoever is cleaned, summarised and printed as a schema-valid line.

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
# Keys a Deployment has, so that the hostile values land where the code looks for them.
KNOWN_KEYS = st.sampled_from([
    'metadata', 'spec', 'status', 'template', 'containers', 'initContainers', 'ephemeralContainers',
    'env', 'value', 'valueFrom', 'image', 'name', 'namespace', 'uid', 'resourceVersion', 'generation',
    'managedFields', 'replicas', 'paused', 'readyReplicas', 'observedGeneration',
])
HOSTILE_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(KNOWN_KEYS | st.text(max_size=4), children, max_size=5),
    max_leaves=30,
)


def _maybe(shape: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The expected shape, or anything at all in its place."""
    return shape | JSON_VALUES


def _shaped(optional: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    return _maybe(st.fixed_dictionaries({}, optional=optional))


CONTAINER = _shaped({'name': JSON_VALUES, 'image': JSON_VALUES,
                     'env': _maybe(st.lists(_shaped({'name': JSON_VALUES, 'value': JSON_VALUES,
                                                     'valueFrom': JSON_VALUES}), max_size=3))})
CONTAINERS = _maybe(st.lists(CONTAINER, max_size=3))
DEPLOYMENTS = st.fixed_dictionaries({}, optional={
    'metadata': _shaped({name: JSON_VALUES for name in
                         ('name', 'namespace', 'uid', 'resourceVersion', 'generation', 'managedFields')}),
    'spec': _shaped({'replicas': JSON_VALUES, 'paused': JSON_VALUES, 'template': _shaped({
        'spec': _shaped({'containers': CONTAINERS, 'initContainers': CONTAINERS,
                         'ephemeralContainers': CONTAINERS})})}),
    'status': _shaped({name: JSON_VALUES for name in
                       ('readyReplicas', 'updatedReplicas', 'availableReplicas', 'observedGeneration')}),
})
OBJECTS = DEPLOYMENTS | st.dictionaries(KNOWN_KEYS | st.text(max_size=4), HOSTILE_VALUES | JSON_VALUES,
                                        max_size=5)


def expected_clean(raw: dict[str, Any], *, redact: bool) -> dict[str, Any]:
    """What clean must give, written the plain way: a deep copy, changed in place."""
    expected = copy.deepcopy(raw)
    metadata = expected.get('metadata')
    if isinstance(metadata, dict):
        metadata.pop('managedFields', None)
    pod_spec: Any = expected
    for key in ('spec', 'template', 'spec'):
        pod_spec = pod_spec.get(key) if isinstance(pod_spec, dict) else None
    for key in objects.CONTAINER_LISTS if redact and isinstance(pod_spec, dict) else ():
        for container in pod_spec.get(key) if isinstance(pod_spec.get(key), list) else []:
            env = container.get('env') if isinstance(container, dict) else None
            for variable in env if isinstance(env, list) else []:
                if isinstance(variable, dict) and 'value' in variable:
                    variable['value'] = objects.REDACTED
    return expected


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=OBJECTS, redact=st.booleans())
def test_property_any_json_object_is_printed_as_a_valid_line(raw: dict[str, Any], redact: bool) -> None:
    before = copy.deepcopy(raw)
    assert_summary_types(objects.summarize(raw))
    obj = objects.clean(raw, redact=redact)
    assert raw == before
    metadata = obj.get('metadata')
    assert not isinstance(metadata, dict) or 'managedFields' not in metadata
    assert obj == expected_clean(raw, redact=redact)
    assert_every_event_is_valid(raw)
    old = objects.clean(deployment(pod={'containers': [{'name': 'a', 'image': 'x'}]}), redact=redact)
    VALIDATOR.validate(events.build(type=EventType.MODIFIED, obj=obj, observed=MOMENT, old=old))


VARIABLES = st.lists(st.fixed_dictionaries({'name': st.text(max_size=3)},
                                           optional={'value': JSON_VALUES, 'valueFrom': JSON_VALUES})
                     | JSON_VALUES, max_size=4)
POD_CONTAINERS = st.lists(st.fixed_dictionaries({'name': st.text(max_size=3)}, optional={'env': VARIABLES})
                          | JSON_VALUES, max_size=4)


@settings(max_examples=300, deadline=None, database=None)
@given(pod_spec=st.fixed_dictionaries({}, optional={key: POD_CONTAINERS for key in objects.CONTAINER_LISTS}),
       applied=st.booleans())
def test_property_every_env_value_of_every_container_is_redacted_and_nothing_else(
        pod_spec: dict[str, Any], applied: bool) -> None:
    """Many containers, many variables, odd entries among them: the object, and its applied manifest."""
    raw = deployment(pod=pod_spec)
    if applied:  # a manifest as kubectl applies it: no managedFields
        raw = _applied({key: value for key, value in raw.items() if key != 'metadata'}
                       | {'metadata': {'name': 'web', 'namespace': 'default'}})
    before = copy.deepcopy(raw)
    obj = copy.deepcopy(objects.clean(raw, redact=True))
    assert raw == before
    if applied:
        manifest = json.loads(obj['metadata']['annotations'].pop(objects.LAST_APPLIED))
        given = json.loads(before['metadata']['annotations'].pop(objects.LAST_APPLIED))
        assert manifest == expected_clean(given, redact=True)
    assert obj == expected_clean(before, redact=True)


def _applied(manifest: dict[str, Any]) -> dict[str, Any]:
    """A Deployment as `kubectl apply` leaves it: the manifest again, in an annotation."""
    raw = copy.deepcopy(manifest)
    raw['metadata']['annotations'] = {objects.LAST_APPLIED: json.dumps(manifest) + '\n', 'team': 'a'}
    return raw


def test_clean_redacts_the_manifest_kubectl_apply_keeps_in_an_annotation() -> None:
    manifest = deployment(pod={'containers': [{'name': 'app', 'env': env(dict(SECRET), FROM_SECRET)}]})
    cleaned = objects.clean(_applied(manifest), redact=True)

    assert 's3cr3t' not in json.dumps(cleaned)
    annotations = cleaned['metadata']['annotations']
    assert annotations['team'] == 'a'
    applied = annotations[objects.LAST_APPLIED]
    assert applied.endswith('\n')
    embedded = json.loads(applied)  # still the readable manifest, only its values redacted
    assert embedded['spec']['template']['spec']['containers'][0]['env'] == [
        {'name': 'PASSWORD', 'value': '<redacted>'}, FROM_SECRET]
    assert embedded['metadata']['name'] == manifest['metadata']['name']
    assert embedded['spec']['replicas'] == manifest['spec']['replicas']


@pytest.mark.parametrize('annotation', ['{"spec": ', '["not", "an", "object"]', 'password=s3cr3t'])
def test_clean_replaces_a_last_applied_annotation_that_does_not_parse_whole(annotation: str) -> None:
    raw = deployment()
    raw['metadata']['annotations'] = {objects.LAST_APPLIED: annotation}
    assert objects.clean(raw, redact=True)['metadata']['annotations'] == {objects.LAST_APPLIED: '<redacted>'}
    assert objects.clean(raw, redact=False)['metadata']['annotations'] == {objects.LAST_APPLIED: annotation}


def test_clean_keeps_a_last_applied_annotation_without_values_as_it_is() -> None:
    raw = _applied(deployment(pod={'containers': [{'name': 'app', 'env': env(FROM_SECRET)}]}))
    assert objects.clean(raw, redact=True)['metadata']['annotations'] == raw['metadata']['annotations']


def test_clean_redacts_a_manifest_in_the_last_applied_annotation_of_a_last_applied_manifest() -> None:
    """kubectl never nests them, but an object may: a value there is a value all the same."""
    inner = deployment(pod={'containers': [{'name': 'app', 'env': env(dict(SECRET))}]})
    outer = _applied(deployment())
    outer['metadata']['annotations'] = {objects.LAST_APPLIED: json.dumps(inner)}
    raw = _applied(outer)
    cleaned = objects.clean(raw, redact=True)
    assert 's3cr3t' not in json.dumps(cleaned)
    nested = json.loads(json.loads(cleaned['metadata']['annotations'][objects.LAST_APPLIED])
                        ['metadata']['annotations'][objects.LAST_APPLIED])
    redacted = [{'name': 'PASSWORD', 'value': '<redacted>'}]
    assert nested['spec']['template']['spec']['containers'][0]['env'] == redacted
