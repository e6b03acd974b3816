"""rollout.rollout: kubectl rollout status's decision, on plain dicts and on real recordings."""
import functools
import json
import pathlib
from typing import Any

import pytest

from deploywatch.model.rollout import rollout
from deploywatch.testing import versions
from tests import builders

RECORDINGS = pathlib.Path(__file__).resolve().parents[1] / 'emulator' / 'recordings'


deployment = functools.partial(builders.deployment, typed=False, namespace=None, uid=None, rv=None,
                               generation=2, replicas=3, status={})


DONE: dict[str, Any] = {'observedGeneration': 2, 'replicas': 3, 'updatedReplicas': 3, 'availableReplicas': 3}
TIMED_OUT = {'type': 'Progressing', 'status': 'False', 'reason': 'ProgressDeadlineExceeded',
             'message': 'ReplicaSet "web-1" has timed out progressing.'}


@pytest.mark.parametrize(('status', 'expected'), [
    ({}, ('Progressing', 'waiting for the spec update to be observed')),
    ({**DONE, 'observedGeneration': 1}, ('Progressing', 'waiting for the spec update to be observed')),
    ({**DONE, 'updatedReplicas': 1}, ('Progressing', '1 of 3 new replicas updated')),
    ({**DONE, 'replicas': 4}, ('Progressing', '1 old replicas pending termination')),
    ({**DONE, 'availableReplicas': 2}, ('Progressing', '2 of 3 updated replicas available')),
    (DONE, ('Complete', 'successfully rolled out')),
    ({**DONE, 'updatedReplicas': 1, 'conditions': [TIMED_OUT]},
     ('Failed', 'exceeded its progress deadline: ReplicaSet "web-1" has timed out progressing.')),
])
def test_the_checks_of_kubectl_rollout_status_in_order(status: dict[str, Any],
                                                       expected: tuple[str, str]) -> None:
    found = rollout(deployment(status=status))
    assert (found['status'], found['message']) == expected


def test_an_unobserved_spec_comes_before_a_deadline_exceeded() -> None:
    # kubectl looks at the condition only once the controller has seen the latest generation.
    found = rollout(deployment(status={**DONE, 'observedGeneration': 1, 'conditions': [TIMED_OUT]}))
    assert found['status'] == 'Progressing'


def test_paused_wins_and_keeps_what_the_checks_said() -> None:
    assert rollout(deployment(paused=True, status=DONE)) == {'status': 'Paused',
                                                        'message': 'paused (successfully rolled out)'}
    assert rollout(deployment(paused=True))['message'] == \
        'paused (waiting for the spec update to be observed)'
    assert rollout(deployment(paused=False, status=DONE))['status'] == 'Complete'


def test_missing_replicas_count_as_the_api_default_of_one() -> None:
    done_one: dict[str, Any] = {'observedGeneration': 2, 'replicas': 1, 'updatedReplicas': 1,
                                'availableReplicas': 1}
    assert rollout(deployment(replicas=None, status=done_one))['status'] == 'Complete'
    assert rollout(deployment(replicas=0, status={'observedGeneration': 2}))['status'] == 'Complete'


@pytest.mark.parametrize('odd', [{}, {'metadata': None, 'spec': [], 'status': 'x'},
                                 {'metadata': {'generation': '3'}, 'status': {'conditions': ['a', None, 7]}},
                                 {'spec': {'replicas': True, 'paused': 'yes'}}])
def test_odd_objects_never_raise(odd: dict[str, Any]) -> None:
    assert rollout(odd)['status'] in {'Progressing', 'Complete', 'Failed', 'Paused'}


@pytest.mark.parametrize('version', list(versions.RECORDED))
def test_recorded_rollouts_progress_then_complete_and_pause(version: str) -> None:
    """The real watch across create, apply, scale, set image, pause: each change rolls out, then pauses."""
    recording = json.loads((RECORDINGS / version / 'watch-everyday.json').read_text())
    objects = [json.loads(line)['object'] for line in recording['response']['stream_lines']]
    states = [rollout(obj)['status'] for obj in objects if obj.get('metadata', {}).get('uid')]
    causes = recording['causes']
    assert len(states) == len(causes)
    for index, cause in enumerate(causes):
        if cause in ('apply-create', 'apply-update', 'scale', 'set-image'):
            assert states[index] == 'Progressing', (cause, index)
            following = states[index:causes.index('rollout-pause')]
            assert 'Complete' in following  # the controller finished each rollout before the next step
    assert states[causes.index('rollout-pause')] == 'Paused'
    assert states[-1] == 'Paused'
