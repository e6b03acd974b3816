"""python -m deploywatch: --help from the settings definition, check without connecting, render."""
import dataclasses
import json
import pathlib
import subprocess
import sys

import pytest

from deploywatch.base.settings import Settings
from deploywatch.testing import ServerThread
from tests.conftest import OPERATOR_TOKEN
from tests.harness.operator import operator_env

DEPLOYWATCH = [sys.executable, '-m', 'deploywatch']


def run(*args: str, env: dict[str, str], stdin: str = '') -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEPLOYWATCH, *args], env=env, input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


def test_help_lists_every_variable_with_its_default(tmp_path: pathlib.Path) -> None:
    result = run('--help', env=operator_env(tmp_path / 'none'))
    assert result.returncode == 0
    for field in dataclasses.fields(Settings):
        line = next(line for line in result.stdout.splitlines() if field.metadata['env'] in line)
        assert '(default: ' in line and field.metadata['accepts'] in line
    assert 'kopf run operator/handlers.py --all-namespaces' in result.stdout


def test_check_validates_without_connecting(apiserver: ServerThread, tmp_path: pathlib.Path) -> None:
    kubeconfig = apiserver.kubeconfig(tmp_path / 'kubeconfig', token=OPERATOR_TOKEN)

    good = run('check', env=operator_env(kubeconfig, {'DEPLOYWATCH_TYPES': 'ADDED'}))
    bad = run('check', env=operator_env(kubeconfig, {'DEPLOYWATCH_TYPES': 'ADDED,OOPS'}))
    no_credentials = run('check', env={**operator_env(tmp_path / 'missing'), 'HOME': str(tmp_path)})

    assert good.returncode == 0 and 'configuration ok' in good.stdout
    assert bad.returncode == 2 and bad.stderr.count('\n') == 1 and 'DEPLOYWATCH_TYPES' in bad.stderr
    assert no_credentials.returncode == 2 and 'no usable Kubernetes credentials' in no_credentials.stderr
    assert apiserver.server.log.requests == []


@pytest.mark.parametrize('broken', [False, True])
def test_render_turns_a_saved_stream_into_text(tmp_path: pathlib.Path, broken: bool) -> None:
    event = {'apiVersion': 'deploywatch/v1', 'type': 'MODIFIED', 'time': '2026-11-27T10:00:00.123Z',
             'namespace': 'prod', 'name': 'api', 'uid': 'u', 'resourceVersion': '9',
             'summary': {'replicas': 3, 'readyReplicas': 2, 'updatedReplicas': 3, 'availableReplicas': 2,
                         'images': ['nginx:1.27'], 'generation': 2, 'observedGeneration': 2,
                         'paused': False},
             'diff': [{'op': 'replace', 'path': '/spec/replicas', 'value': 3}],
             'old': {'spec': {'replicas': 2}}, 'object': {'spec': {'replicas': 3}}}
    saved = json.dumps(event) + '\n' + ('not json\n' if broken else '')

    result = run('render', env=operator_env(tmp_path / 'none'), stdin=saved)

    assert result.returncode == 0
    header, line = result.stdout.splitlines()
    assert header.startswith('TIME (UTC)')
    assert line.split() == ['10:00:00.123', 'MODIFIED', 'prod/api', '2/3', 'nginx:1.27',
                            'spec.replicas', '2→3']
    assert ('line 2 is not JSON' in result.stderr) is broken
