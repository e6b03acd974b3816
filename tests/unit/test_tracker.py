"""tracker.Tracker: the memory that turns raw watch events into the stream's guarantees."""
import copy
import datetime
import functools
import json
import time
from typing import Any

import pytest

from deploywatch.base import encoding
from deploywatch.model import objects
from deploywatch.model.tracker import Tracker, identity
from deploywatch.output import jsonl
from deploywatch.runtime import state as state_file
from tests import builders
from tests.harness.schema import VALIDATOR

NOW = datetime.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=datetime.UTC)


def holding(password: str) -> dict[str, Any]:
    """The pod spec of these Deployments: one container with a PASSWORD in plain text."""
    return builders.pod(env={'PASSWORD': password})


deployment = functools.partial(builders.deployment, uid='u-web', managed_fields=[{'manager': 'kubectl'}],
                               pod=holding('s3cr3t'))


@pytest.fixture
def tracker() -> Tracker:
    return Tracker(redact=True, clock=lambda: NOW)


def observe(tracker: Tracker, watch_type: str | None, raw: dict[str, Any], *,
            inferred: bool = False) -> dict[str, Any]:
    """An event that must be printed, validated against the schema."""
    event = tracker.observe(watch_type, raw, inferred=inferred)
    assert event is not None
    VALIDATOR.validate(event)
    return event


def test_listed_unknown_object_is_an_initial_added(tracker: Tracker) -> None:
    event = observe(tracker, None, deployment())
    assert (event['type'], event['initial']) == ('ADDED', True)
    assert event['time'] == '2024-05-01T12:00:00.250Z'
    assert (event['name'], event['uid'], event['resourceVersion']) == ('web', 'u-web', '1')
    assert len(tracker) == 1


def test_watched_unknown_object_is_a_non_initial_added(tracker: Tracker) -> None:
    event = observe(tracker, 'ADDED', deployment())
    assert (event['type'], event['initial']) == ('ADDED', False)


def test_a_watched_modified_of_an_unknown_object_is_an_added(tracker: Tracker) -> None:
    event = observe(tracker, 'MODIFIED', deployment())
    assert (event['type'], event['initial']) == ('ADDED', False)


@pytest.mark.parametrize('again', [None, 'ADDED', 'MODIFIED'])
def test_the_same_resource_version_again_prints_nothing(tracker: Tracker, again: str | None) -> None:
    observe(tracker, None, deployment(rv='5'))
    assert tracker.observe(again, deployment(rv='5')) is None
    assert len(tracker) == 1


def test_a_relist_with_a_changed_resource_version_is_a_modified(tracker: Tracker) -> None:
    first = observe(tracker, None, deployment(rv='1', replicas=1))
    event = observe(tracker, None, deployment(rv='9', replicas=4))
    assert event['type'] == 'MODIFIED'
    assert event['old'] == first['object']
    assert event['diff'] == [{'op': 'replace', 'path': '/spec/replicas', 'value': 4}]


def test_modified_carries_the_previous_printed_state_and_the_diff(tracker: Tracker) -> None:
    observe(tracker, None, deployment(rv='1', replicas=1))
    second = observe(tracker, 'MODIFIED', deployment(rv='2', replicas=2))
    third = observe(tracker, 'MODIFIED', deployment(rv='3', replicas=3))
    assert third['type'] == 'MODIFIED'
    assert third['old'] == second['object']
    assert third['old']['metadata']['resourceVersion'] == '2'
    assert third['diff'] == [{'op': 'replace', 'path': '/spec/replicas', 'value': 3}]
    assert 'initial' not in third


def test_a_modified_that_changes_only_the_resource_version_has_an_empty_diff(tracker: Tracker) -> None:
    observe(tracker, None, deployment(rv='1'))
    event = observe(tracker, 'MODIFIED', deployment(rv='2'))
    assert (event['type'], event['diff']) == ('MODIFIED', [])


def test_deleted_carries_the_final_object_and_forgets_the_key(tracker: Tracker) -> None:
    observe(tracker, None, deployment(rv='1'))
    event = observe(tracker, 'DELETED', deployment(rv='2', replicas=0))
    assert event['type'] == 'DELETED'
    assert event['resourceVersion'] == '2'
    assert event['object']['spec']['replicas'] == 0
    assert not {'initial', 'old', 'diff'} & event.keys()
    assert len(tracker) == 0
    assert tracker.uids() == []
    assert tracker.resync('u-web') is None


def test_deleted_of_an_unknown_object_is_still_printed(tracker: Tracker) -> None:
    event = observe(tracker, 'DELETED', deployment())
    assert event['type'] == 'DELETED'
    assert len(tracker) == 0


def test_an_object_after_its_deleted_is_a_new_added(tracker: Tracker) -> None:
    observe(tracker, None, deployment(rv='1'))
    observe(tracker, 'DELETED', deployment(rv='2'))
    event = observe(tracker, 'ADDED', deployment(rv='3'))
    assert (event['type'], event['initial']) == ('ADDED', False)


def test_a_recreated_object_with_a_new_uid_is_an_added(tracker: Tracker) -> None:
    observe(tracker, None, deployment(uid='u-1', rv='1'))
    event = observe(tracker, 'ADDED', deployment(uid='u-2', rv='8'))
    assert (event['type'], event['initial'], event['uid']) == ('ADDED', False, 'u-2')
    assert sorted(tracker.uids()) == ['u-1', 'u-2']  # the first one's DELETED has not arrived yet
    deleted = observe(tracker, 'DELETED', deployment(uid='u-1', rv='9'))
    assert deleted['uid'] == 'u-1'
    assert tracker.uids() == ['u-2']


def test_redaction_applies_to_object_old_and_diff(tracker: Tracker) -> None:
    observe(tracker, None, deployment(rv='1', pod=holding('first-secret')))
    event = observe(tracker, 'MODIFIED', deployment(rv='2', pod=holding('second-secret'), replicas=2))
    line = json.dumps(event)
    assert 'first-secret' not in line
    assert 'second-secret' not in line
    for state in (event['object'], event['old']):
        assert state['spec']['template']['spec']['containers'][0]['env'][0]['value'] == '<redacted>'
        assert 'managedFields' not in state['metadata']
    assert event['diff'] == [{'op': 'replace', 'path': '/spec/replicas', 'value': 2}]


def test_without_redaction_values_are_kept_and_diffed() -> None:
    tracker = Tracker(redact=False, clock=lambda: NOW)
    observe(tracker, None, deployment(rv='1', pod=holding('a')))
    event = observe(tracker, 'MODIFIED', deployment(rv='2', pod=holding('b')))
    assert event['old']['spec']['template']['spec']['containers'][0]['env'][0]['value'] == 'a'
    assert event['diff'] == [
        {'op': 'replace', 'path': '/spec/template/spec/containers/0/env/0/value', 'value': 'b'},
    ]


def test_the_raw_object_is_never_mutated(tracker: Tracker) -> None:
    raw = deployment()
    before = copy.deepcopy(raw)
    observe(tracker, None, raw)
    observe(tracker, 'DELETED', raw)
    assert raw == before


def test_objects_without_uid_are_keyed_by_namespace_and_name(tracker: Tracker) -> None:
    assert identity(deployment(uid=None)) == 'default/web'
    assert identity(deployment(uid='')) == 'default/web'
    assert identity(deployment(uid='u-9')) == 'u-9'
    assert identity({}) == 'None/None'
    observe(tracker, None, deployment(uid=None, rv='1'))
    assert tracker.uids() == ['default/web']
    assert observe(tracker, 'MODIFIED', deployment(uid=None, rv='2'))['type'] == 'MODIFIED'
    assert tracker.resync('default/web') is not None
    observe(tracker, 'DELETED', deployment(uid=None, rv='3'))
    assert tracker.resync('default/web') is None


def test_resync_builds_from_the_latest_printed_state(tracker: Tracker) -> None:
    observe(tracker, None, deployment(rv='1', replicas=1))
    observe(tracker, 'MODIFIED', deployment(rv='2', replicas=5))
    event = tracker.resync('u-web')
    assert event is not None
    VALIDATOR.validate(event)
    assert (event['type'], event['resourceVersion'], event['summary']['replicas']) == ('RESYNC', '2', 5)
    assert event['time'] == '2024-05-01T12:00:00.250Z'
    assert tracker.resync('no-such-key') is None


def test_the_clock_is_read_for_every_event() -> None:
    moments = iter([NOW + datetime.timedelta(seconds=index) for index in range(3)])
    tracker = Tracker(redact=True, clock=lambda: next(moments))
    times = [observe(tracker, None, deployment(rv='1'))['time'],
             observe(tracker, 'MODIFIED', deployment(rv='2'))['time']]
    resync = tracker.resync('u-web')
    assert resync is not None
    assert [*times, resync['time']] == [
        '2024-05-01T12:00:00.250Z', '2024-05-01T12:00:01.250Z', '2024-05-01T12:00:02.250Z']


def test_uids_is_a_snapshot_safe_while_mutating(tracker: Tracker) -> None:
    for index in range(5):
        observe(tracker, None, deployment(f'd{index}', uid=f'u{index}'))
    snapshot = tracker.uids()
    seen = []
    for key in snapshot:  # would raise "dictionary changed size during iteration" on a live view
        seen.append(key)
        observe(tracker, 'DELETED', deployment(f'd{key[1:]}', uid=key))
        observe(tracker, 'ADDED', deployment(f'new-{key}', uid=f'new-{key}'))
    assert seen == ['u0', 'u1', 'u2', 'u3', 'u4']
    assert snapshot == ['u0', 'u1', 'u2', 'u3', 'u4']
    assert tracker.uids() == [f'new-u{index}' for index in range(5)]


def test_a_printed_state_is_not_shared_with_the_next_raw_object(tracker: Tracker) -> None:
    raw = deployment(rv='1')
    first = observe(tracker, None, raw)
    raw['spec']['replicas'] = 9  # a caller reusing its dict must not change what was printed
    raw['metadata']['resourceVersion'] = '2'
    assert first['object']['spec']['replicas'] == 1
    event = observe(tracker, 'MODIFIED', raw)
    assert event['old']['spec']['replicas'] == 1
    assert event['diff'] == [{'op': 'replace', 'path': '/spec/replicas', 'value': 9}]


@pytest.mark.parametrize('raw', [
    {},
    {'metadata': None},
    {'metadata': 'web', 'spec': None},
    {'metadata': {'name': 42, 'uid': ['u'], 'resourceVersion': 7}},
    {'metadata': {'name': 'web', 'namespace': 'default'}, 'status': None},
], ids=['empty', 'metadata null', 'metadata a string', 'odd identity types', 'no uid no rv'])
def test_hostile_objects_go_through_every_kind_of_event(tracker: Tracker, raw: dict[str, Any]) -> None:
    added = observe(tracker, None, raw)
    assert (added['type'], added['initial']) == ('ADDED', True)
    assert tracker.observe('MODIFIED', raw) is None  # the same (absent) resourceVersion: nothing new
    resync = tracker.resync(identity(raw))
    assert resync is not None
    VALIDATOR.validate(resync)
    assert observe(tracker, 'DELETED', raw)['type'] == 'DELETED'
    assert len(tracker) == 0


def test_a_modified_found_by_a_listing_is_marked_inferred(tracker: Tracker) -> None:
    observe(tracker, 'ADDED', deployment(rv='1'))
    watched = observe(tracker, 'MODIFIED', deployment(rv='2', replicas=2))
    listed = observe(tracker, None, deployment(rv='3', replicas=3))
    assert 'inferred' not in watched
    assert listed['type'] == 'MODIFIED' and listed['inferred'] is True
    assert listed['old']['spec']['replicas'] == 2


def test_an_inferred_deleted_is_marked_and_forgets_the_object(tracker: Tracker) -> None:
    observe(tracker, None, deployment(rv='1'))
    event = observe(tracker, 'DELETED', deployment(rv='1'), inferred=True)
    assert (event['type'], event['inferred']) == ('DELETED', True)
    assert tracker.resync('u-web') is None and len(tracker) == 0


def test_unlisted_names_known_objects_of_the_namespace_missing_from_a_listing(tracker: Tracker) -> None:
    for name, namespace in [('a', 'one'), ('b', 'one'), ('c', 'two')]:
        raw = deployment(name, uid=f'u-{name}')
        raw['metadata']['namespace'] = namespace
        observe(tracker, None, raw)

    assert [o['metadata']['name'] for o in tracker.unlisted('one', {'u-a'})] == ['b']
    assert [o['metadata']['name'] for o in tracker.unlisted('two', {'u-a'})] == ['c']
    assert sorted(o['metadata']['name'] for o in tracker.unlisted(None, {'u-a'})) == ['b', 'c']
    assert tracker.unlisted('one', {'u-a', 'u-b'}) == []
    assert len(tracker) == 3  # naming them does not forget them: their DELETED does


def test_restored_memory_gets_no_resync_until_confirmed(tracker: Tracker) -> None:
    previous = Tracker(redact=True, clock=lambda: NOW)
    observe(previous, None, deployment('kept', uid='u-kept', rv='5'))
    observe(previous, None, deployment('gone', uid='u-gone', rv='6'))
    observe(previous, None, deployment('changed', uid='u-changed', rv='7'))

    tracker.restore(previous.snapshot())
    assert {tracker.resync(uid) for uid in tracker.uids()} == {None}

    assert tracker.observe(None, deployment('kept', uid='u-kept', rv='5')) is None  # unchanged: silent
    changed = observe(tracker, None, deployment('changed', uid='u-changed', rv='9', replicas=4))
    assert (changed['type'], changed['inferred']) == ('MODIFIED', True)
    assert [o['metadata']['name'] for o in tracker.unlisted(None, {'u-kept', 'u-changed'})] == ['gone']
    assert tracker.resync('u-kept') is not None and tracker.resync('u-gone') is None


def test_every_change_of_memory_moves_the_version(tracker: Tracker) -> None:
    versions = [tracker.version]
    for watch_type, rv in [(None, '1'), ('MODIFIED', '2'), ('DELETED', '2')]:
        tracker.observe(watch_type, deployment(rv=rv))
        versions.append(tracker.version)
    assert versions == sorted(set(versions))


def test_memory_restored_from_an_unredacted_state_file_meets_todays_redaction(tracker: Tracker) -> None:
    unredacted = Tracker(redact=False, clock=lambda: NOW)
    observe(unredacted, None, deployment('web', uid='u-web', rv='5'))

    tracker.restore(unredacted.snapshot())

    assert 's3cr3t' not in str(tracker.snapshot())
    changed = observe(tracker, None, deployment('web', uid='u-web', rv='9', replicas=3))
    assert 's3cr3t' not in json.dumps(changed)
    assert changed['old']['spec']['template']['spec']['containers'][0]['env'][0]['value'] == '<redacted>'


def test_replaced_names_the_known_object_whose_name_a_new_uid_now_bears(tracker: Tracker) -> None:
    observe(tracker, None, deployment('web', uid='u-old', rv='1'))
    observe(tracker, None, deployment('api', uid='u-api', rv='2'))

    recreated = deployment('web', uid='u-new', rv='9')
    assert [(o['metadata']['uid'], o['metadata']['resourceVersion']) for o in tracker.replaced(recreated)] \
        == [('u-old', '1')]
    assert tracker.replaced(deployment('web', uid='u-old', rv='3')) == []  # the same object, changed
    assert tracker.replaced(deployment('other', uid='u-other')) == []  # a new name
    other_namespace = deployment('web', uid='u-elsewhere')
    other_namespace['metadata']['namespace'] = 'elsewhere'
    assert tracker.replaced(other_namespace) == []

    observe(tracker, 'DELETED', tracker.replaced(recreated)[0], inferred=True)
    assert tracker.replaced(recreated) == []  # ended: the listing goes on with the new one
    assert observe(tracker, None, recreated)['type'] == 'ADDED'


def test_a_late_deleted_of_the_old_uid_keeps_the_new_one_findable(tracker: Tracker) -> None:
    observe(tracker, None, deployment('web', uid='u-old', rv='1'))
    observe(tracker, 'ADDED', deployment('web', uid='u-new', rv='5'))
    observe(tracker, 'DELETED', deployment('web', uid='u-old', rv='1'))

    assert [o['metadata']['uid'] for o in tracker.replaced(deployment('web', uid='u-third'))] == ['u-new']


def test_replaced_works_on_restored_memory(tracker: Tracker) -> None:
    previous = Tracker(redact=True, clock=lambda: NOW)
    observe(previous, None, deployment('web', uid='u-old', rv='1'))
    tracker.restore(previous.snapshot())

    assert [o['metadata']['uid'] for o in tracker.replaced(deployment('web', uid='u-new'))] == ['u-old']


def test_outside_names_the_objects_of_namespaces_out_of_scope_restored_or_not(tracker: Tracker) -> None:
    previous = Tracker(redact=True, clock=lambda: NOW)
    for name, namespace in [('a', 'kept'), ('b', 'left'), ('c', 'left'), ('d', 'kept')]:
        raw = deployment(name, uid=f'u-{name}')
        raw['metadata']['namespace'] = namespace
        observe(previous, None, raw)
    tracker.restore(previous.snapshot())
    confirmed = deployment('a', uid='u-a')
    confirmed['metadata']['namespace'] = 'kept'
    tracker.observe(None, confirmed)

    outside = tracker.outside(lambda namespace: namespace == 'kept')
    assert [o['metadata']['name'] for o in outside] == ['b', 'c']
    assert [o['metadata']['name'] for o in tracker.outside(lambda namespace: namespace == 'left')] \
        == ['a', 'd']  # a confirmed one too: its namespace left the scope
    assert [o['metadata']['name'] for o in tracker.outside(lambda _: False)] == ['a', 'b', 'c', 'd']
    assert tracker.outside(lambda _: True) == []
    assert 's3cr3t' not in json.dumps(outside)


def test_a_compressed_memory_prints_byte_for_byte_what_a_plain_one_does(tmp_path: Any) -> None:
    """From train_after objects on the memory is kept zstd-compressed; no line may differ for it."""
    plain_tracker = Tracker(redact=True, clock=lambda: NOW, train_after=10**9)
    packed_tracker = Tracker(redact=True, clock=lambda: NOW, train_after=4)

    def both(method: str, *args: Any, **kwargs: Any) -> Any:
        results = [getattr(tracker, method)(*args, **kwargs) for tracker in (plain_tracker, packed_tracker)]
        assert encode_line(results[0]) == encode_line(results[1])
        return results[1]

    for i in range(8):  # a listing: the dictionary is trained at the fourth
        both('observe', None, deployment(f'web-{i}', uid=f'u-{i}', rv=str(10 + i), pod=holding(f'pw-{i}')))
    assert kept_bytes(packed_tracker, 'u-0') != kept_bytes(plain_tracker, 'u-0')  # compressed, then
    for step in range(3):
        both('observe', 'MODIFIED', deployment('web-1', uid='u-1', rv=str(100 + step), replicas=step + 2))
    both('observe', None, deployment('web-2', uid='u-2', rv='200', replicas=7))  # a relist's MODIFIED
    both('replaced', deployment('web-3', uid='u-new'))
    both('unlisted', 'default', {'u-0', 'u-1', 'u-2'})
    both('resync', 'u-1', slot=5)
    both('observe', 'DELETED', deployment('web-1', uid='u-1', rv='300'))

    saved = tmp_path / 'state'
    state_file.save(saved, packed_tracker.snapshot())
    assert b'"name":"web-5"' in saved.read_bytes()  # the file holds plain JSON, whatever memory holds
    assert state_file.load(saved) == {key: encoding.plain(data)
                                      for key, data in plain_tracker.snapshot().items()}
    restored = Tracker(redact=True, clock=lambda: NOW, train_after=4)
    restored.restore(state_file.load(saved) or {})
    plain_tracker.restore(plain_tracker.snapshot())
    packed_tracker = restored
    both('outside', lambda namespace: False)
    both('observe', None, deployment('web-4', uid='u-4', rv='400', replicas=9))
    both('observe', None, deployment('web-5', uid='u-5', rv='15'))  # unchanged: nothing


def test_a_dictionary_trained_in_the_background_changes_no_line_and_then_packs_everything() -> None:
    """The operator's tracker trains in a thread: objects stay plain until the dictionary is
    there, then all of them are packed at once; the lines are the same throughout."""
    plain_tracker = Tracker(redact=True, clock=lambda: NOW, train_after=10**9)
    packed_tracker = Tracker(redact=True, clock=lambda: NOW, train_after=4, in_background=True)

    def same(kind: str | None, raw: dict[str, Any]) -> None:
        assert encode_line(packed_tracker.observe(kind, raw)) == encode_line(plain_tracker.observe(kind, raw))

    for i in range(8):
        same(None, deployment(f'web-{i}', uid=f'u-{i}', rv=str(10 + i), pod=holding(f'pw-{i}')))
    deadline = time.monotonic() + 30  # the training takes milliseconds; a bound, not a pause
    rv = 100
    held = packed_tracker.held('u-0')
    while (kept_bytes(packed_tracker, 'u-0') == kept_bytes(plain_tracker, 'u-0')
           and time.monotonic() < deadline):
        rv += 1  # every observation looks whether the dictionary is there yet
        same('MODIFIED', deployment('web-1', uid='u-1', rv=str(rv), replicas=rv % 5 + 1))
        time.sleep(0.001)
    assert packed_tracker._packer.idle(timeout=30)
    assert packed_tracker.held('u-0') is held  # packed in place: a ledger holding the record holds it packed
    for i in range(8):  # every object held when it arrived is packed now, and reads back the same
        assert kept_bytes(packed_tracker, f'u-{i}') != kept_bytes(plain_tracker, f'u-{i}')
        packed = kept_bytes(packed_tracker, f'u-{i}') or b''
        assert encoding.plain(packed) == kept_bytes(plain_tracker, f'u-{i}')
    same('MODIFIED', deployment('web-2', uid='u-2', rv=str(rv + 1), replicas=9))


def kept_bytes(tracker: Tracker, key: str) -> bytes | None:
    """The bytes the tracker keeps for ``key``, plain or packed (None: not alive)."""
    held = tracker.held(key)
    return None if held is None else held.encoded


def encode_line(value: Any) -> Any:
    if value is None:
        return value
    return jsonl.encode(value) if isinstance(value, dict) else [jsonl.encode(item) for item in value]


def applied(raw: dict[str, Any], password: str) -> dict[str, Any]:
    """``raw`` with a last-applied annotation that carries an env value."""
    manifest = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'web'},
                'spec': {'template': {'spec': {'containers': [
                    {'name': 'app', 'env': [{'name': 'PASSWORD', 'value': password}]}]}}}}
    raw['metadata']['annotations'] = {'kubectl.kubernetes.io/last-applied-configuration':
                                      json.dumps(manifest) + '\n'}
    return raw


def test_an_unchanged_last_applied_annotation_is_redacted_once_and_reused(tracker: Tracker) -> None:
    states = [applied(deployment(rv='1'), 'first'), applied(deployment(rv='2', replicas=2), 'first'),
              applied(deployment(rv='3', replicas=3), 'second'), applied(deployment(rv='4'), 'second')]
    for number, raw in enumerate(states):
        objects._redacted_applied.cache_clear()
        event = observe(tracker, 'MODIFIED' if number else None, raw)
        reused = number in (1, 3)  # the annotation is the one of the state printed before
        assert objects._redacted_applied.cache_info().misses == (0 if reused else 1)
        assert jsonl.encode(event['object']) == jsonl.encode(objects.clean(raw, redact=True))
        assert 'first' not in str(event) and 'second' not in str(event)


def test_memory_restored_under_other_settings_knows_versions_but_not_content() -> None:
    """Issue 20, item 7: kept redacted, restored unredacted: no diff from "<redacted>" to a value."""
    redacted = Tracker(redact=True, clock=lambda: NOW)
    observe(redacted, None, deployment('same', uid='u-same', rv='5'))
    observe(redacted, None, deployment('moved', uid='u-moved', rv='6'))
    tracker = Tracker(redact=False, clock=lambda: NOW)

    tracker.restore(redacted.snapshot(), unknown={'u-same', 'u-moved'})

    assert tracker.observe(None, deployment('same', uid='u-same', rv='5')) is None  # unchanged: silent
    moved = observe(tracker, None, deployment('moved', uid='u-moved', rv='9', replicas=3))
    assert 'old' not in moved and moved['inferred'] is True
    assert moved['diff'] == [{'op': 'replace', 'path': '', 'value': moved['object']}]
    same = observe(tracker, 'MODIFIED', deployment('same', uid='u-same', rv='10', replicas=2))
    assert [op['path'] for op in same['diff']] == ['/spec/replicas']  # against the state seen unchanged
    assert '<redacted>' not in json.dumps([moved, same, tracker.resync('u-same')])
