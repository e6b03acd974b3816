"""text: the ROLLOUT and BY columns, the rollout transition as a change, and the CLUSTER column."""
import json
import os
import pathlib
from typing import Any

import pytest

from deploywatch.model.tracker import Tracker
from deploywatch.output.text import TextEncoder, render, terminal_width

RECORDINGS = pathlib.Path(__file__).resolve().parents[1] / 'emulator' / 'recordings'


def recorded_lines(*, cluster: str | None = None) -> list[str]:
    recording = json.loads((RECORDINGS / 'v1.24' / 'watch-everyday.json').read_text())
    tracker, encoder = Tracker(redact=True, cluster=cluster), TextEncoder(colour=False)
    text = b''
    for line in recording['response']['stream_lines']:
        event = json.loads(line)
        if event['type'] != 'BOOKMARK':
            printed = tracker.observe(event['type'], event['object'])
            assert printed is not None
            text += encoder(printed)
    return text.decode().splitlines()


def test_rollout_and_manager_columns_and_transitions() -> None:
    header, *lines = recorded_lines()
    assert header.split() == ['TIME', '(UTC)', 'TYPE', 'NAMESPACE/NAME', 'READY', 'IMAGES', 'ROLLOUT', 'BY',
                              'CHANGES']
    assert lines[0].split()[1:7] == ['ADDED', 'rec/web', '0/1', 'nginx:1.25', 'Progressing',
                                     'kubectl-client-side-apply']
    completed = [line for line in lines if 'rollout Progressing→Complete' in line]
    assert len(completed) == 4  # create, apply, scale and set image each rolled out
    assert all(line.split()[5:7] == ['Complete', 'kube-controller-manager/status'] for line in completed)
    scaled = next(line for line in lines if 'spec.replicas 1→2' in line)
    assert scaled.split()[5:9] == ['Progressing', 'kubectl/scale', 'rollout', 'Complete→Progressing']
    assert any('rollout Complete→Paused' in line and 'kubectl-rollout' in line for line in lines)
    # Aligned: BY starts at the same offset on every line.
    assert len({line.index(line.split()[6]) for line in lines}) == 1


def test_the_transition_comes_first_and_needs_old() -> None:
    event: dict[str, Any] = {
        'type': 'MODIFIED', 'time': '2026-12-01T09:38:06.123Z', 'namespace': 'n', 'name': 'a',
        'summary': {'replicas': 1, 'readyReplicas': 0, 'images': ['x'],
                    'rollout': {'status': 'Failed', 'message': 'exceeded its progress deadline'}},
        'changedBy': None,
        'diff': [{'op': 'replace', 'path': '/status/unavailableReplicas', 'value': 1}],
        'old': {'metadata': {'generation': 1}, 'status': {'observedGeneration': 1}},
    }
    line = render(event)
    assert line.split()[5:10] == ['Failed', '-', 'rollout', 'Progressing→Failed',
                                  'status.unavailableReplicas']
    assert 'rollout' not in render({**event, 'old': None}).split()[6:]


def test_lines_saved_before_these_fields_render_with_empty_cells() -> None:
    old_line = {'type': 'DELETED', 'time': '2026-12-01T09:38:06.123Z', 'namespace': 'n', 'name': 'a',
                'summary': {'replicas': 1, 'readyReplicas': 1, 'images': ['x']}}
    assert render(old_line).split() == ['09:38:06.123', 'DELETED', 'n/a', '1/1', 'x']


def test_a_named_cluster_gets_its_column_after_the_type() -> None:
    header, first, *_ = recorded_lines(cluster='prod-eu-1')
    assert header.split()[:5] == ['TIME', '(UTC)', 'TYPE', 'CLUSTER', 'NAMESPACE/NAME']
    assert first.split()[1:4] == ['ADDED', 'prod-eu-1', 'rec/web']


def test_a_modified_whose_previous_state_is_unknown_says_so() -> None:
    """Issue 20, item 7: a state file kept under other settings: the diff replaces the whole object."""
    event = {'type': 'MODIFIED', 'time': '2026-12-01T10:00:00.000Z', 'namespace': 'default', 'name': 'web',
             'inferred': True, 'summary': {'replicas': 1},
             'diff': [{'op': 'replace', 'path': '', 'value': {}}]}
    assert render(event).endswith('(previous state unknown)  (inferred: seen by listing again)')


def _changed(count: int, **fields: Any) -> dict[str, Any]:
    """A MODIFIED that changed ``count`` annotations (``note-0``...), each ``old→new``."""
    return {'type': 'MODIFIED', 'time': '2026-12-01T10:00:00.000Z', 'namespace': 'default', 'name': 'web',
            'summary': {'replicas': 1, 'images': ['nginx:1.25']}, 'changedBy': None,
            'diff': [{'op': 'replace', 'path': f'/metadata/annotations/note-{index}', 'value': 'new'}
                     for index in range(count)],
            'old': {'metadata': {'annotations': {f'note-{index}': 'old' for index in range(count)}}},
            **fields}


def test_a_terminal_line_is_fitted_to_the_width_by_cutting_the_last_changes() -> None:
    whole = render(_changed(6))
    assert whole.count('note-') == 6 and '…' not in whole  # piped: whole, however long
    fixed = whole.index('metadata.annotations.note-0')  # where CHANGES starts
    part = len('metadata.annotations.note-0 old→new  ')

    for width in (fixed + part + 6, fixed + 3 * part + 6, 400):
        line = render(_changed(6), width=width)
        shown = line.count('note-')
        assert len(line) <= width
        assert line.endswith('' if shown == 6 else f'  … +{6 - shown}')
        assert render(_changed(6), width=width + part).count('note-') == min(6, shown + 1)  # no room wasted


def test_a_cut_line_keeps_its_marks_and_the_rest_of_its_columns() -> None:
    mark = '(inferred: seen by listing again)'
    whole = render(_changed(6, inferred=True))
    fixed = whole.index('metadata.annotations.note-0')
    line = render(_changed(6, inferred=True), width=fixed + len('metadata.annotations.note-0 old→new'))
    assert line[fixed:] == f'… +6  {mark}'  # the mark stays: it says what kind of MODIFIED it is
    assert line[:fixed] == whole[:fixed]
    added = {'type': 'ADDED', 'time': '2026-12-01T10:00:00.000Z', 'namespace': 'default', 'name': 'x' * 80,
             'initial': True, 'summary': {}}
    assert render(added, width=60) == render(added)  # no change to cut: names are never cut


def test_the_width_is_the_terminals_now_and_columns_only_where_it_reports_none(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = iter([os.terminal_size((120, 40)), os.terminal_size((0, 0)), os.terminal_size((0, 0))])
    monkeypatch.setattr(os, 'get_terminal_size', lambda _: next(sizes))
    monkeypatch.setenv('COLUMNS', '90')
    assert terminal_width() == 120  # an exported COLUMNS is some older terminal's
    assert terminal_width() == 90
    monkeypatch.delenv('COLUMNS')
    assert terminal_width() is None
