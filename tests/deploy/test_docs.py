"""
docs/install.md is tested: its paths exist and build, its overlay example points the
image where it says, and its ``jq`` programs give what they promise on a pod log.

A pod's log is stdout and stderr in one, so the log here is recorded that way from the
base's container (the image's command, from this venv) against the emulated API server:
event lines and Kopf's log lines interleaved, as ``kubectl logs`` shows them.
"""
import pathlib
import re
import subprocess
import sys
import time
from typing import Any

import jq
import yaml

from tests.deploy import containers, dockerfile, emulator, manifests
from tests.deploy.rbac import granted
from tests.harness.driver import Driver

DOC = manifests.REPO / 'docs' / 'install.md'
IMAGE = dockerfile.parse(manifests.REPO / 'Dockerfile')
VENV = pathlib.Path(sys.executable).parent.parent
JQ_COMMAND = re.compile(r"\| jq (?P<flags>(?:-[a-zA-Z]+ )*)'(?P<program>[^']+)'")


def _text() -> str:
    return DOC.read_text()


def _jq(flags: str, program: str, log: str) -> list[Any]:
    """jq as the docs run it: -R reads each line as a string (no other input mode is used)."""
    assert 'R' in flags, flags
    compiled = jq.compile(program)
    return [value for line in log.splitlines() for value in compiled.input_value(line).all()]


def test_every_manifests_path_in_the_docs_exists_and_builds() -> None:
    paths = set(re.findall(r'(manifests(?:/[\w.-]+)*/?)', _text()))
    assert 'manifests/overlays/ha' in {path.rstrip('/') for path in paths}
    for path in paths:
        assert (manifests.REPO / path).exists(), f'docs/install.md names {path}, which does not exist'
    tested = {where: name for name, where in manifests.SHAPES.items()}
    for applied in re.findall(r'kubectl (?:apply|delete) -k (manifests[\w./-]*)', _text()):
        assert manifests.REPO / applied.rstrip('/') in tested, f'docs/install.md applies {applied}, untested'
    crd = yaml.safe_load((manifests.REPO / 'manifests/overlays/ha/peering-crd.yaml').read_text())
    assert f"crd/{crd['metadata']['name']}" in _text()


def test_the_image_overlay_example_points_at_the_registry(tmp_path: pathlib.Path) -> None:
    (example,) = re.findall(r'```yaml\n(.*?)```', _text(), flags=re.DOTALL)
    docs = manifests.build_example(example, tmp_path)
    assert manifests.container(docs)['image'] == 'registry.example.org/deploywatch:0.1.0'


def test_the_jq_programs_read_the_events_out_of_a_pod_log(tmp_path: pathlib.Path) -> None:
    events_only, deletions = [(m['flags'], m['program']) for m in JQ_COMMAND.finditer(_text())]
    log = _record_pod_log(tmp_path)
    lines = log.splitlines()
    assert any(not line.startswith('{') for line in lines), 'no log line in the log: nothing to filter'
    events = _jq(*events_only, log)
    assert len(events) == len([line for line in lines if line.startswith('{"apiVersion":"deploywatch/v1"')])
    assert [(e['type'], e['name']) for e in events][:2] == [('ADDED', 'api'), ('ADDED', 'web')]
    (deleted,) = _jq(*deletions, log)
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT[\d:.]+Z default/api', deleted), deleted


def _record_pod_log(tmp_path: pathlib.Path) -> str:
    docs = manifests.build('base')
    container = manifests.container(docs)
    log_path = tmp_path / 'pod.log'
    with emulator.serving(granted(docs)) as thread:
        driver = Driver(thread)
        driver.create('default', 'api')
        env = containers.environment(IMAGE, container, venv=VENV, pod='deploywatch-docs', extra={
            'KUBECONFIG': str(emulator.kubeconfig(thread, tmp_path / 'kubeconfig')), 'HOME': str(tmp_path)})
        with log_path.open('wb') as log:
            command = containers.on_free_port(containers.argv(IMAGE, container))
            process = subprocess.Popen(command, env=env, cwd='/', stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT)
        try:
            _wait_for_line(log_path, '"name":"api"')
            driver.create('default', 'web')
            _wait_for_line(log_path, '"name":"web"')
            driver.delete('default', 'api')
            _wait_for_line(log_path, '"type":"DELETED"')
        finally:
            process.terminate()
            assert process.wait(timeout=30) == 0
    return log_path.read_text()


def _wait_for_line(path: pathlib.Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert time.monotonic() < deadline, f'no {text} in the log:\n{path.read_text()[-3000:]}'
        time.sleep(0.05)
