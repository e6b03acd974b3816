"""authorship.changed_by: who made a change, on plain dicts and on the real recordings (v1.24 to v1.37)."""
import itertools
import json
import pathlib
from collections.abc import Callable
from typing import Any

import pytest

from deploywatch.model import authorship
from deploywatch.model.tracker import Tracker
from deploywatch.testing import factory, versions
from deploywatch.testing.controller import rolled_out
from deploywatch.testing.kinds import DEPLOYMENTS, NAMESPACES
from deploywatch.testing.store import Change, Store

MERGE = 'application/merge-patch+json'
STRATEGIC = 'application/strategic-merge-patch+json'

RECORDINGS = pathlib.Path(__file__).resolve().parents[1] / 'emulator' / 'recordings'
# The managers and subresources of the recorded kubectl commands (recordings/README.md).
AUTHORS = {'apply-create': ('kubectl-client-side-apply', None),
           'apply-update': ('kubectl-client-side-apply', None),
           'scale': ('kubectl', 'scale'), 'set-image': ('kubectl-set', None),
           'rollout-pause': ('kubectl-rollout', None), 'annotate': ('kubectl-annotate', None),
           'label': ('kubectl-label', None), '<controller>': ('kube-controller-manager', 'status')}


def entry(manager: str, *, time: str | None = '2026-01-01T10:00:00Z', subresource: str | None = None,
          fields: dict[str, Any] | None = None, operation: str = 'Update') -> dict[str, Any]:
    found: dict[str, Any] = {'manager': manager, 'operation': operation, 'apiVersion': 'apps/v1',
                             'fieldsType': 'FieldsV1', 'fieldsV1': fields or {}}
    if time is not None:
        found['time'] = time
    if subresource is not None:
        found['subresource'] = subresource
    return found


SPEC: dict[str, Any] = {'f:spec': {'f:replicas': {}, 'f:template': {'f:spec': {'f:containers': {
    'k:{"name":"app"}': {'.': {}, 'f:image': {}, 'f:name': {}}}}}}}
STATUS: dict[str, Any] = {'f:status': {'f:replicas': {}, 'f:conditions': {'.': {}, 'k:{"type":"Available"}': {
    '.': {}, 'f:lastUpdateTime': {}, 'f:status': {}, 'f:type': {}}}}}
OBJ: dict[str, Any] = {'metadata': {'generation': 2},
       'spec': {'replicas': 2,
                'template': {'spec': {'containers': [{'name': 'app', 'image': 'nginx:1.27'}]}}},
       'status': {'replicas': 2,
                  'conditions': [{'type': 'Available', 'status': 'True', 'lastUpdateTime': 't'}]}}


def by(found: authorship.ChangedBy | None) -> tuple[str, str | None] | None:
    return None if found is None else (found['manager'], found['subresource'])


def test_no_managed_fields_is_null() -> None:
    assert authorship.changed_by(None, before=None, diff=None, obj=OBJ) is None
    assert authorship.changed_by([], before=b'[]', diff=[], obj=OBJ) is None
    assert authorship.changed_by(['x', {'manager': 3}], before=None, diff=None, obj=OBJ) is None


def test_added_is_the_sole_entry_or_the_strictly_newest() -> None:
    one = [entry('kubectl-create')]
    assert authorship.changed_by(one, before=None, diff=None, obj=OBJ) == {
        'manager': 'kubectl-create', 'operation': 'Update', 'subresource': None,
        'time': '2026-01-01T10:00:00Z'}
    two = [entry('helm', time='2026-01-01T10:00:00Z'), entry('kubectl-edit', time='2026-01-01T10:00:05Z')]
    assert by(authorship.changed_by(two, before=None, diff=None, obj=OBJ)) == ('kubectl-edit', None)
    tied = [entry('helm'), entry('kubectl-edit')]
    assert authorship.changed_by(tied, before=None, diff=None, obj=OBJ) is None
    timeless = [entry('helm'), entry('kubectl', time=None, subresource='scale')]
    assert authorship.changed_by(timeless, before=None, diff=None, obj=OBJ) is None


def test_the_entry_added_or_advanced_not_the_newest() -> None:
    controller = entry('kube-controller-manager', subresource='status', time='2026-01-01T10:00:09Z',
                       fields=STATUS)
    before = [controller, entry('helm', time='2026-01-01T10:00:00Z', fields=SPEC)]
    # helm writes again in the controller's second: not the newest entry by sort order, but the advanced one.
    after = [controller, entry('helm', time='2026-01-01T10:00:09Z', fields=SPEC)]
    found = authorship.changed_by(after, before=authorship.stamps(before),
                                  diff=[{'op': 'replace', 'path': '/spec/replicas', 'value': 2}], obj=OBJ)
    assert by(found) == ('helm', None)


def test_a_shrunk_entry_lost_fields_to_the_writer_and_is_not_the_author() -> None:
    before = [entry('kubectl-client-side-apply', fields=SPEC)]
    rest = {'f:spec': {'f:template': SPEC['f:spec']['f:template']}}
    after = [entry('kubectl', time=None, subresource='scale', fields={'f:spec': {'f:replicas': {}}}),
             entry('kubectl-client-side-apply', fields=rest)]
    found = authorship.changed_by(after, before=authorship.stamps(before),
                                  diff=[{'op': 'replace', 'path': '/spec/replicas', 'value': 2}], obj=OBJ)
    assert found == {'manager': 'kubectl', 'operation': 'Update', 'subresource': 'scale', 'time': None}


def test_when_nothing_advanced_the_owner_of_the_changed_fields() -> None:
    # v1.24: neither a second scale (no time) nor a count update (same field set) moves any entry.
    entries = [entry('kubectl', time=None, subresource='scale', fields={'f:spec': {'f:replicas': {}}}),
               entry('kube-controller-manager', subresource='status', fields=STATUS),
               entry('kubectl-set', fields={'f:spec': {'f:template': {}}})]
    same = authorship.stamps(entries)
    scaled = authorship.changed_by(entries, before=same, obj=OBJ,
                                   diff=[{'op': 'replace', 'path': '/spec/replicas', 'value': 2},
                                         {'op': 'replace', 'path': '/metadata/generation', 'value': 2}])
    assert by(scaled) == ('kubectl', 'scale')
    counted = authorship.changed_by(entries, before=same, obj=OBJ, diff=[
        {'op': 'replace', 'path': '/status/conditions/0/lastUpdateTime', 'value': 't'}])
    assert by(counted) == ('kube-controller-manager', 'status')


def test_a_generation_change_no_field_shows_is_the_one_spec_writer() -> None:
    # With redaction on, a changed env value leaves no trace in the diff but generation.
    entries = [entry('kube-controller-manager', subresource='status', fields=STATUS),
               entry('kubectl-client-side-apply', fields=SPEC)]
    found = authorship.changed_by(entries, before=authorship.stamps(entries), obj=OBJ,
                                  diff=[{'op': 'replace', 'path': '/metadata/generation', 'value': 2}])
    assert by(found) == ('kubectl-client-side-apply', None)


def test_owners_that_cannot_be_told_apart_are_null() -> None:
    entries = [entry('helm', fields=SPEC), entry('argocd', operation='Apply', fields=SPEC)]
    found = authorship.changed_by(entries, before=authorship.stamps(entries), obj=OBJ,
                                  diff=[{'op': 'replace', 'path': '/spec/replicas', 'value': 2}])
    assert found is None


def test_unknown_previous_entries_fall_back_to_ownership() -> None:
    """After a restart from a state file, nothing is remembered of the previous entries."""
    entries = [entry('kube-controller-manager', subresource='status', fields=STATUS),
               entry('helm', fields=SPEC)]
    found = authorship.changed_by(entries, before=None, obj=OBJ,
                                  diff=[{'op': 'replace', 'path': '/spec/template/spec/containers/0/image',
                                         'value': 'nginx:1.27'}])
    assert by(found) == ('helm', None)


@pytest.mark.parametrize(('fields', 'path', 'owned'), [
    (SPEC, '/spec/replicas', True),
    (SPEC, '/spec/template/spec/containers/0/image', True),
    (SPEC, '/spec/template/spec/containers/0/ports', False),
    (SPEC, '/spec/template/spec/containers/5/image', False),
    ({'f:spec': {'f:selector': {}}}, '/spec/selector/matchLabels/app', True),  # atomic: owned whole
    ({'f:metadata': {'f:finalizers': {'v:"a"': {}}}}, '/metadata/finalizers/0', True),
    (STATUS, '/status', True),
    ('garbage', '/spec/replicas', False),
])
def test_owns_walks_field_sets_along_json_patch_paths(fields: Any, path: str, owned: bool) -> None:
    obj = {**OBJ, 'metadata': {'finalizers': ['a']}, 'spec': {**OBJ['spec'], 'selector': {'matchLabels': {}}}}
    tokens = path.split('/')[1:]
    assert authorship.owns(fields, tokens, obj) is owned


def test_stamps_keep_neither_field_sets_nor_odd_values() -> None:
    kept = authorship.stamps([entry('helm', fields=SPEC), {'manager': 'x', 'time': {'a': 1}}, 'junk'])
    assert json.loads(kept) == [['helm', 'Update', None, '2026-01-01T10:00:00Z'], ['x', None, None, None]]
    assert len(kept) < 100


@pytest.mark.parametrize('version', list(versions.RECORDED))
@pytest.mark.parametrize('redact', [True, False])
def test_every_recorded_change_is_attributed_to_its_cause(version: str, redact: bool) -> None:
    """The real watch across kubectl's everyday writes and the controller's status writes, via the tracker."""
    recording = json.loads((RECORDINGS / version / 'watch-everyday.json').read_text())
    tracker = Tracker(redact=redact)
    found = []
    for line in recording['response']['stream_lines']:
        event = json.loads(line)
        if event['type'] != 'BOOKMARK':
            printed = tracker.observe(event['type'], event['object'])
            assert printed is not None
            found.append(by(printed['changedBy']))
    assert found == [AUTHORS[cause] for cause in recording['causes']]


@pytest.mark.parametrize('version', list(versions.RECORDED.values()), ids=list(versions.RECORDED))
@pytest.mark.parametrize('clock', ['frozen', 'ticking'])
def test_the_emulators_writes_are_attributed_on_every_version(version: versions.KubeVersion,
                                                              clock: str) -> None:
    """kubectl's and the controller's writes through the emulated store; frozen: all in one second."""
    store = Store(version=version)
    store.create(NAMESPACES, '', factory.namespace('default'), manager='test')
    seconds = itertools.count()
    store.clock = ((lambda: '2026-01-01T10:00:00Z') if clock == 'frozen'
                   else lambda: f'2026-01-01T10:{(n := next(seconds)) // 60:02d}:{n % 60:02d}Z')
    changes: list[Change] = []
    store.subscribe(changes.append)
    store.create(DEPLOYMENTS, 'default', factory.deployment('web'), manager='kubectl-create')

    def controller() -> None:
        body = rolled_out(store.get(DEPLOYMENTS, 'default', 'web'), time=store.clock(), version=version)
        body['status']['readyReplicas'] = len(changes)  # every status write changes a count
        store.update(DEPLOYMENTS, 'default', 'web', body, manager='kube-controller-manager',
                     subresource='status')

    def scale(replicas: int) -> None:
        store.patch_scale('default', 'web', {'spec': {'replicas': replicas}}, MERGE, manager='kubectl')

    steps: list[tuple[str, Callable[[], Any]]] = [
        ('<controller>', controller),
        ('scale', lambda: scale(3)),
        ('<controller>', controller),
        ('scale', lambda: scale(4)),
        ('set-image', lambda: store.patch(DEPLOYMENTS, 'default', 'web', {'spec': {'template': {'spec': {
            'containers': [{'name': 'app', 'image': 'nginx:1.27'}]}}}}, STRATEGIC, manager='kubectl-set')),
        ('<controller>', controller),
        ('<controller>', controller),
    ]
    for _, step in steps:
        step()
    tracker = Tracker(redact=True)
    found = [by(event['changedBy']) for change in changes
             if (event := tracker.observe(change.type, change.obj)) is not None]
    assert found == [('kubectl-create', None), *(AUTHORS[cause] for cause, _ in steps)]
