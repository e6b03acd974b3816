"""make demo: JSON Lines when piped, the text format (with ROLLOUT and BY) on a terminal."""
import json
import os
import pty
import subprocess
import sys

from tests.harness.operator import REPO
from tests.harness.schema import VALIDATOR

DEMO = [sys.executable, '-m', 'deploywatch.testing.demo']


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(('DEPLOYWATCH_', 'KUBECONFIG'))}


def test_piped_the_demo_prints_json_lines() -> None:
    result = subprocess.run(DEMO, capture_output=True, timeout=120, check=True, cwd=REPO, env=environment())
    events = [json.loads(line) for line in result.stdout.splitlines()]
    for event in events:
        VALIDATOR.validate(event)
    assert [e['type'] for e in events].count('DELETED') == 1
    scaled = next(e for e in events if e['type'] == 'MODIFIED' and e['name'] == 'frontend')
    assert scaled['changedBy']['manager'] == 'kubectl' and scaled['changedBy']['subresource'] == 'scale'


def test_on_a_terminal_the_demo_reads_like_the_text_format() -> None:
    reader, writer = pty.openpty()
    process = subprocess.Popen(DEMO, stdout=writer, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                               cwd=REPO, env={**environment(), 'NO_COLOR': '1'})
    os.close(writer)
    output = b''
    while True:
        try:
            chunk = os.read(reader, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        output += chunk
    os.close(reader)
    assert process.wait(timeout=120) == 0
    lines = output.decode().splitlines()
    assert lines[0].split() == ['TIME', '(UTC)', 'TYPE', 'NAMESPACE/NAME', 'READY', 'IMAGES', 'ROLLOUT', 'BY',
                                'CHANGES']
    assert not any(line.lstrip().startswith('{') for line in lines)
    assert any('kubectl/scale' in line and 'spec.replicas 2→3' in line for line in lines)
    assert any('kube-controller-manager/status' in line and 'rollout Progressing→Complete' in line
               for line in lines)
