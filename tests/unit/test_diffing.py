"""diffing.diff: readable RFC 6902 patches, checked against an independent implementation."""
import copy
import json
from typing import Any

import jsonpatch
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploywatch.model import diffing
from deploywatch.model.diffing import diff, escape


def test_equal_inputs_give_no_operations() -> None:
    doc = {'metadata': {'name': 'web'}, 'spec': {'replicas': 1, 'list': [1, {'a': None}]}}
    assert diff(doc, copy.deepcopy(doc)) == []
    assert diff({}, {}) == []
    assert diff([], []) == []


def test_a_changed_leaf_is_one_replace_at_its_full_path() -> None:
    old = {'spec': {'replicas': 1, 'paused': False}}
    new = {'spec': {'replicas': 3, 'paused': False}}
    assert diff(old, new) == [{'op': 'replace', 'path': '/spec/replicas', 'value': 3}]


def test_a_new_key_is_an_add_and_a_missing_key_a_remove() -> None:
    old = {'metadata': {'labels': {'app': 'web', 'tier': 'front'}}}
    new = {'metadata': {'labels': {'app': 'web', 'team': 'blue'}}}
    assert diff(old, new) == [
        {'op': 'add', 'path': '/metadata/labels/team', 'value': 'blue'},
        {'op': 'remove', 'path': '/metadata/labels/tier'},
    ]


def test_an_added_map_is_added_whole_and_a_removed_one_removed_whole() -> None:
    assert diff({'spec': {}}, {'spec': {'strategy': {'type': 'Recreate'}}}) == [
        {'op': 'add', 'path': '/spec/strategy', 'value': {'type': 'Recreate'}},
    ]
    assert diff({'spec': {'strategy': {'type': 'Recreate'}}}, {'spec': {}}) == [
        {'op': 'remove', 'path': '/spec/strategy'},
    ]


def test_nested_maps_give_deep_paths_in_sorted_order() -> None:
    old = {'b': {'y': {'z': 1}}, 'a': {'x': 1}}
    new = {'b': {'y': {'z': 2}}, 'a': {'x': 2}}
    assert diff(old, new) == [
        {'op': 'replace', 'path': '/a/x', 'value': 2},
        {'op': 'replace', 'path': '/b/y/z', 'value': 2},
    ]


def test_lists_of_the_same_length_are_compared_item_by_item() -> None:
    old = {'spec': {'template': {'spec': {'containers': [
        {'name': 'app', 'image': 'nginx:1.25'}, {'name': 'proxy', 'image': 'envoy:1'}]}}}}
    new = copy.deepcopy(old)
    new['spec']['template']['spec']['containers'][1]['image'] = 'envoy:2'
    assert diff(old, new) == [
        {'op': 'replace', 'path': '/spec/template/spec/containers/1/image', 'value': 'envoy:2'},
    ]
    assert diff({'l': [1, 2, 3]}, {'l': [1, 5, 3]}) == [{'op': 'replace', 'path': '/l/1', 'value': 5}]


def test_a_list_that_grows_or_shrinks_is_replaced_whole() -> None:
    assert diff({'l': [1, 2]}, {'l': [1, 2, 3]}) == [{'op': 'replace', 'path': '/l', 'value': [1, 2, 3]}]
    assert diff({'l': [1, 2]}, {'l': [2]}) == [{'op': 'replace', 'path': '/l', 'value': [2]}]
    assert diff({'l': [1]}, {'l': []}) == [{'op': 'replace', 'path': '/l', 'value': []}]


def test_a_map_becoming_a_list_or_a_scalar_is_a_replace() -> None:
    assert diff({'x': {'a': 1}}, {'x': [1]}) == [{'op': 'replace', 'path': '/x', 'value': [1]}]
    assert diff({'x': [1]}, {'x': 'text'}) == [{'op': 'replace', 'path': '/x', 'value': 'text'}]
    assert diff({'x': None}, {'x': {}}) == [{'op': 'replace', 'path': '/x', 'value': {}}]


def test_tilde_and_slash_in_keys_are_escaped_as_rfc_6901_requires() -> None:
    old = {'metadata': {'annotations': {'deployment.kubernetes.io/revision': '1'}}}
    new = {'metadata': {'annotations': {'deployment.kubernetes.io/revision': '2'}}}
    assert diff(old, new) == [
        {'op': 'replace', 'path': '/metadata/annotations/deployment.kubernetes.io~1revision', 'value': '2'},
    ]
    assert diff({}, {'a~b': 1}) == [{'op': 'add', 'path': '/a~0b', 'value': 1}]
    assert diff({'~1': 1}, {}) == [{'op': 'remove', 'path': '/~01'}]  # '~' first, then '/'


def test_escape_order_matters() -> None:
    assert escape('~/') == '~0~1'
    assert escape('/~') == '~1~0'
    assert escape('~1') == '~01'
    assert escape('') == ''


def test_resource_version_and_managed_fields_are_ignored() -> None:
    old = {'metadata': {'name': 'web', 'resourceVersion': '1', 'managedFields': [{'manager': 'a'}]}}
    new = {'metadata': {'name': 'web', 'resourceVersion': '2', 'managedFields': [{'manager': 'b'}]}}
    assert diff(old, new) == []
    assert diff({'metadata': {'name': 'web'}}, new) == []
    assert diff(old, {'metadata': {'name': 'web'}}) == []


def test_only_the_top_level_resource_version_is_ignored() -> None:
    old = {'spec': {'metadata': {'resourceVersion': '1', 'managedFields': []}}}
    new = {'spec': {'metadata': {'resourceVersion': '2', 'managedFields': [1]}}}
    assert diff(old, new) == [
        {'op': 'replace', 'path': '/spec/metadata/managedFields', 'value': [1]},
        {'op': 'replace', 'path': '/spec/metadata/resourceVersion', 'value': '2'},
    ]


def test_type_changes_between_equal_python_values_are_changes() -> None:
    assert diff({'v': 1}, {'v': 1.0}) == [{'op': 'replace', 'path': '/v', 'value': 1.0}]
    assert diff({'v': 1}, {'v': True}) == [{'op': 'replace', 'path': '/v', 'value': True}]
    assert diff({'v': 0}, {'v': False}) == [{'op': 'replace', 'path': '/v', 'value': False}]
    assert diff({'v': 1.0}, {'v': True}) == [{'op': 'replace', 'path': '/v', 'value': True}]
    assert diff({'v': [1]}, {'v': [True]}) == [{'op': 'replace', 'path': '/v/0', 'value': True}]


def test_the_patch_applies_with_an_independent_implementation() -> None:
    old = {'metadata': {'name': 'web', 'annotations': {'a/b': '1', 'c~d': 'x'}},
           'spec': {'replicas': 1, 'list': [1, 2], 'gone': True}}
    new = {'metadata': {'name': 'web', 'annotations': {'a/b': '2', 'e/f~': 'y'}},
           'spec': {'replicas': 2, 'list': [3, 2, 1], 'new': {'k': [None]}}}
    assert jsonpatch.apply_patch(old, diff(old, new)) == new


# Property: for any two JSON documents, applying the diff with jsonpatch gives the new document,
# except for the two ignored metadata fields, which keep their old values.

KEYS = st.sampled_from(['a', 'b', 'c', '', '~', '/', 'a/b', '~1', '0', '-',
                        'resourceVersion', 'managedFields'])
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-3, max_value=3)
    # -0.0 == 0.0 and is not a change; normalise it so that the text comparison below is fair
    | st.floats(allow_nan=False, allow_infinity=False, width=16).map(lambda f: f + 0.0)
    | st.sampled_from(['', 'x', 'y', 'é', '😀'])
)
VALUES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)
DOCUMENTS = st.fixed_dictionaries(
    {'metadata': st.dictionaries(KEYS, VALUES, max_size=4)},
    optional={'spec': VALUES, 'status': VALUES, 'a/b': VALUES},
)


def _canonical(value: Any) -> str:
    """JSON text, so that 1, 1.0 and True compare different, as they are different JSON."""
    return json.dumps(value, sort_keys=True)


def _with_ignored_fields_of(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    expected = copy.deepcopy(new)
    for name in ('resourceVersion', 'managedFields'):
        if name in old['metadata']:
            expected['metadata'][name] = old['metadata'][name]
        else:
            expected['metadata'].pop(name, None)
    return expected


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(old=DOCUMENTS, new=DOCUMENTS)
def test_property_jsonpatch_of_the_diff_turns_old_into_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    original = copy.deepcopy(old)
    patched = jsonpatch.apply_patch(old, diff(old, new))
    assert _canonical(patched) == _canonical(_with_ignored_fields_of(new, old))
    assert _canonical(old) == _canonical(original)  # diff does not touch its inputs


@settings(max_examples=100, deadline=None, database=None)
@given(doc=DOCUMENTS)
def test_property_a_document_against_itself_gives_no_operations(doc: dict[str, Any]) -> None:
    assert diff(doc, copy.deepcopy(doc)) == []


@settings(max_examples=100, deadline=None, database=None)
@given(old=DOCUMENTS, new=DOCUMENTS)
def test_property_operations_are_the_three_readable_kinds_and_never_touch_ignored_paths(
        old: dict[str, Any], new: dict[str, Any]) -> None:
    for operation in diff(old, new):
        assert operation['op'] in {'add', 'remove', 'replace'}
        assert ('value' in operation) == (operation['op'] != 'remove')
        assert operation['path'] not in {'/metadata/resourceVersion', '/metadata/managedFields'}


# Property: the fast walk (``==`` decides, checked by encoding) gives what the strict walk does,
# on pairs of documents that share most of their subtrees, as two states of one object do.

def _variant(value: Any, data: st.DataObject, *, top: bool = False) -> Any:
    """``value`` with some of its parts changed: a twin that ``==`` may not tell apart, a new
    value, a key removed or added, keys reordered; most parts left as they are."""
    choices = ['same'] * 4 + ['twin'] * 3 + ['other', 'deeper']
    choice = 'deeper' if top else data.draw(st.sampled_from(choices))
    if choice == 'same':
        return copy.deepcopy(value)
    if choice == 'twin':
        if isinstance(value, bool):
            return data.draw(st.sampled_from([int(value), float(value)]))
        if isinstance(value, int):
            return data.draw(st.sampled_from([float(value), *([bool(value)] if value in (0, 1) else [])]))
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict) and len(value) > 1:
            return dict(reversed(list(copy.deepcopy(value).items())))
        return copy.deepcopy(value)
    if choice == 'other':
        return data.draw(VALUES)
    if isinstance(value, dict):
        changed = {key: _variant(child, data) for key, child in value.items()
                   if not data.draw(st.booleans()) or len(value) < 2}
        if data.draw(st.booleans()):
            changed[data.draw(KEYS)] = data.draw(VALUES)
        return changed
    if isinstance(value, list):
        return [_variant(item, data) for item in value]
    return copy.deepcopy(value)


@settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(old=DOCUMENTS, data=st.data())
def test_property_the_fast_walk_gives_the_strict_walks_operations(old: dict[str, Any],
                                                                    data: st.DataObject) -> None:
    new = _variant(old, data, top=True)
    strict: list[dict[str, Any]] = []
    diffing._strict(old, new, '', strict)
    assert diff(old, new) == strict
    assert diff(old, new, encoded=orjson.dumps(new)) == strict


def test_a_type_change_deep_inside_an_equal_looking_map_is_found_by_the_fast_walk() -> None:
    old = {'spec': {'a': {'b': [1, {'c': 0}]}, 'd': 'x'}}
    new = {'spec': {'a': {'b': [1, {'c': False}]}, 'd': 'y'}}
    assert diff(old, new) == [{'op': 'replace', 'path': '/spec/a/b/1/c', 'value': False},
                              {'op': 'replace', 'path': '/spec/d', 'value': 'y'}]
