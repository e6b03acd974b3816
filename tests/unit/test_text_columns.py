"""text: the ROLLOUT and BY columns, the rollout transition as a change, and the CLUSTER column."""
import json
import pathlib
from typing import Any

from deploywatch.text import TextEncoder, render
from deploywatch.tracker import Tracker

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
