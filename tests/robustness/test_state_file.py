"""
The state file keeps only what was written, refuses what is not its own, and fails loudly.

* A line the writer could not write (the reader went away, the disk is full) is not
  saved as printed: the next run prints it (as at a first start, or inferred).
* A ``DEPLOYWATCH_STATE_FILE`` that exists and is not a deploywatch state file, or is one
  of a newer format, is refused before anything connects (exit 2, one line on stderr) and
  left as it was.
* A save that fails is an ERROR on stderr and stops the operator with status 1.
"""
import json
import pathlib
import shutil
import subprocess

import pytest

from deploywatch.runtime import state
from deploywatch.testing import ServerThread, factory
from tests.conftest import OPERATOR_TOKEN, StartOperator
from tests.harness.clusters import Cluster
from tests.harness.driver import Driver
from tests.harness.operator import HANDLERS, KOPF, eventually, of, operator_env
from tests.harness.truth import wait_until_consistent
from tests.robustness.conftest import Start

FAILURE_EXIT = 1  # README, "Exit status": an ERROR on stderr stopped it
STOP = 30.0  # seconds: a bound on the operator stopping by itself, never reached when it works


def _run(kubeconfig: pathlib.Path, tmp_path: pathlib.Path, scope: str, env: dict[str, str],
         stdout: int | object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(KOPF), 'run', str(HANDLERS), scope],
                            stdout=stdout, stderr=(tmp_path / 'raw.stderr').open('wb'),  # type: ignore[arg-type]
                            stdin=subprocess.DEVNULL, env=operator_env(kubeconfig, env))


def test_lines_the_reader_never_took_are_printed_by_the_next_run(
        cluster: Cluster, operator_kubeconfig: pathlib.Path, start_operator: StartOperator,
        tmp_path: pathlib.Path) -> None:
    """``deploywatch | head -1``: what followed the first line was not written, so not saved."""
    namespace = cluster.new_namespace('head')
    for index in range(200):
        cluster.create(factory.deployment(f'd{index:03d}', namespace=namespace, replicas=0))
    path = tmp_path / 'state'
    env = {'DEPLOYWATCH_STATE_FILE': str(path), 'DEPLOYWATCH_RESYNC_SECONDS': '0'}

    first = _run(operator_kubeconfig, tmp_path, f'--namespace={namespace}', env, subprocess.PIPE)
    assert first.stdout is not None
    head = first.stdout.readline()
    first.stdout.close()  # the reader goes away after one line
    assert first.wait(timeout=STOP) == 0, (tmp_path / 'raw.stderr').read_text()
    assert head

    saved = set(state.load(path) or {})
    # Written means taken by the pipe: the first line, and what its 64 KiB buffer held.
    assert 1 <= len(saved) < 50, len(saved)
    truth = cluster.truth({namespace})
    second = start_operator(f'--namespace={namespace}', env=env)
    added = second.wait_for_count(lambda e: e['type'] == 'ADDED', len(truth) - len(saved),
                                  what='every Deployment the first run did not write')
    assert all(e['initial'] for e in added)
    assert {e['uid'] for e in added} | saved == set(truth)


def test_a_full_disk_is_an_error_and_nothing_unwritten_is_saved(
        apiserver: ServerThread, driver: Driver, start: Start, tmp_path: pathlib.Path) -> None:
    namespace = driver.namespace('full')
    for name in ('a', 'b', 'c'):
        driver.create(namespace, name)
    path = tmp_path / 'state'
    env = {'DEPLOYWATCH_STATE_FILE': str(path), 'DEPLOYWATCH_RESYNC_SECONDS': '0'}

    with open('/dev/full', 'wb') as full:  # every write: ENOSPC
        kubeconfig = apiserver.kubeconfig(tmp_path / 'raw.kubeconfig', token=OPERATOR_TOKEN)
        first = _run(kubeconfig, tmp_path, f'--namespace={namespace}', env, full)
        status = first.wait(timeout=STOP)
    stderr = (tmp_path / 'raw.stderr').read_text()
    assert status == FAILURE_EXIT, stderr
    errors = [line for line in stderr.splitlines() if 'ERROR' in line]
    assert len(errors) == 1 and 'No space left on device' in errors[0], stderr
    assert 'Traceback' not in stderr, stderr
    assert not state.load(path), 'lines that were never written were saved as printed'

    second = start(f'--namespace={namespace}', env=env)
    added = second.wait_for_count(lambda e: e['type'] == 'ADDED', 3, what='all three, as at a first start')
    assert all(e['initial'] for e in added)


@pytest.mark.parametrize('content', [b'name,replicas\nweb,3\n', b'{"format": "something-else/1"}\n',
                                     b'\x00\x01binary',
                                     # a newer deploywatch's (issue 20): its data is not this one's to drop
                                     b'{"format": "deploywatch-state/3", "checksum": "0"}\nu1\t{}\n'])
def test_a_file_that_is_not_a_state_file_is_refused_and_kept(
        apiserver: ServerThread, driver: Driver, start: Start, tmp_path: pathlib.Path,
        content: bytes) -> None:
    namespace = driver.namespace('foreign')
    driver.create(namespace, 'a')
    path = tmp_path / 'precious.csv'
    path.write_bytes(content)

    operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_STATE_FILE': str(path)})
    assert operator.process.wait(timeout=STOP) == 2
    lines = operator.stderr.splitlines()
    assert len(lines) == 1 and 'DEPLOYWATCH_STATE_FILE' in lines[0] and str(path) in lines[0], lines
    assert path.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.precious')] == []
    assert apiserver.server.log.requests == [], 'it connected before refusing'


@pytest.mark.parametrize('how', ['folder removed', 'folder replaced by a file'])
def test_a_failed_save_is_an_error_and_stops_the_operator(
        driver: Driver, start: Start, tmp_path: pathlib.Path, how: str) -> None:
    """The saver dies after start (as root, chmod would stop no write): one ERROR line, exit 1."""
    namespace = driver.namespace('failing')
    driver.create(namespace, 'a')
    folder = tmp_path / 'state'
    folder.mkdir()
    path = folder / 'state'
    operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_STATE_FILE': str(path)})
    operator.wait_for(lambda e: e['name'] == 'a', what='ADDED')
    eventually(path.exists, what='the first save')

    shutil.rmtree(folder)  # every later save fails: no such directory ...
    if how == 'folder replaced by a file':
        folder.write_text('not a folder\n')  # ... or not a directory
    driver.scale(namespace, 'a', 4)  # a change to save
    status = operator.process.wait(timeout=STOP)
    assert status == FAILURE_EXIT, operator.stderr
    errors = [line for line in operator.stderr.splitlines() if 'ERROR' in line]
    assert len(errors) == 1 and 'the state file saver failed' in errors[0] and str(path) in errors[0], errors
    assert 'Traceback' not in operator.stderr, operator.stderr
    assert wait_until_consistent(operator, driver.truth, namespaces={namespace}, timeout=5) == []


def _without_shaping(path: pathlib.Path) -> None:
    """Make ``path`` a state file as deploywatch wrote it before it recorded its shaping settings."""
    header, _, body = path.read_bytes().partition(b'\n')
    meta = json.loads(header)
    meta.pop('shaping', None)
    meta.pop('unknown', None)
    path.write_bytes(json.dumps(meta).encode() + b'\n' + body)


@pytest.mark.parametrize('redact', [
    ('true', 'false', False),  # the env values it kept were "<redacted>": the real ones are not known
    ('false', 'true', False),  # any other value: the rule is a mismatch, whichever way it goes
    ('true', 'false', True),   # a file of an earlier deploywatch, which recorded no settings
], ids=['redacted-then-not', 'unredacted-then-redacted', 'older-file'])
def test_a_state_file_kept_under_other_settings_invents_no_change(
        driver: Driver, start: Start, tmp_path: pathlib.Path, redact: tuple[str, str, bool]) -> None:
    """
    Issue 20, item 7: restored with another DEPLOYWATCH_REDACT, every resourceVersion is still
    known (nothing printed again for what did not change) but not the content: a change made
    meanwhile is a MODIFIED without ``old`` whose diff replaces the whole object, and what
    the listing confirms unchanged is kept as this run sees it, so later diffs are real ones.
    """
    before, after, older_file = redact
    namespace = driver.namespace('reshaped')
    driver.create(namespace, 'a-same')
    driver.create(namespace, 'b-moved')
    path = tmp_path / 'state'
    env = {'DEPLOYWATCH_STATE_FILE': str(path), 'DEPLOYWATCH_RESYNC_SECONDS': '0'}
    first = start(f'--namespace={namespace}', env={**env, 'DEPLOYWATCH_REDACT': before})
    first.wait_for_count(lambda e: e['type'] == 'ADDED', 2, what='first run: both ADDED')
    assert first.stop() == 0
    if older_file:
        _without_shaping(path)
    driver.roll_out(namespace, 'b-moved')  # status only, while deploywatch is down

    second = start(f'--namespace={namespace}', env={**env, 'DEPLOYWATCH_REDACT': after})
    moved = second.wait_for(of('b-moved', 'MODIFIED'), what='the change made while down')
    driver.create(namespace, 'z-sentinel')  # listed after a-same, or seen by the watch after the listing
    second.wait_for(of('z-sentinel', 'ADDED'), what='a-same listed')
    driver.scale(namespace, 'a-same', 2)
    same = second.wait_for(of('a-same', 'MODIFIED'), what='a real change after the restart')

    assert same['diff'] == [{'op': 'replace', 'path': '/metadata/generation', 'value': 2},
                            {'op': 'replace', 'path': '/spec/replicas', 'value': 2}]
    assert moved['inferred'] is True
    assert 'old' not in moved  # not known: it was kept under other settings
    assert moved['diff'] == [{'op': 'replace', 'path': '', 'value': moved['object']}]
    assert [e['type'] for e in second.matching(of('a-same'))] == ['MODIFIED']  # nothing at the restart
    shown = json.dumps(second.events)
    assert ('<redacted>' in shown) is (after == 'true')
    assert ('s3cr3t-do-not-print' in shown) is (after == 'false')
