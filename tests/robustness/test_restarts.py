"""Guarantee 6: with a state file, a restart prints only what changed while deploywatch was down."""
import pathlib
import signal

from deploywatch.model.tracker import decode
from deploywatch.runtime import state
from tests.harness.driver import Driver
from tests.harness.operator import OperatorProcess, eventually, of
from tests.harness.truth import wait_until_consistent
from tests.robustness.conftest import Start


def _saved_version(path: pathlib.Path, uid: str) -> str | None:
    saved = (state.load(path) if path.exists() else None) or {}
    if uid not in saved:
        return None
    version: str | None = decode(saved[uid])['metadata']['resourceVersion']
    return version


def _changes(operator: OperatorProcess) -> list[tuple[str, str, bool | None, bool | None]]:
    return sorted((e['type'], e['name'], e.get('inferred'), e.get('initial'))
                  for e in operator.events if e['type'] != 'RESYNC')


def test_a_restart_with_a_state_file_prints_only_real_differences(
        driver: Driver, start: Start, tmp_path: pathlib.Path) -> None:
    namespace = driver.namespace('restarts')
    for name in ('a', 'b', 'c'):
        driver.create(namespace, name)
    env = {'DEPLOYWATCH_STATE_FILE': str(tmp_path / 'state.json'), 'DEPLOYWATCH_RESYNC_SECONDS': '0.2'}
    first = start(f'--namespace={namespace}', env=env)
    first.wait_for_count(lambda e: e['type'] == 'ADDED', 3, what='first run: three ADDED')
    driver.scale(namespace, 'a', 3)
    printed_b = first.wait_for(of('b', 'ADDED'), what='b')['object']
    first.wait_for(of('a', 'MODIFIED'), what='first run: MODIFIED')
    assert first.stop() == 0

    # While deploywatch is down: b changes, c goes, d comes, a stays as it was.
    driver.scale(namespace, 'b', 5)
    driver.delete(namespace, 'c')
    driver.create(namespace, 'd')

    second = start(f'--namespace={namespace}', env=env)
    assert wait_until_consistent(second, driver.truth, namespaces={namespace}, before=first.events) == []
    assert _changes(second) == [('ADDED', 'd', None, True), ('DELETED', 'c', True, None),
                                ('MODIFIED', 'b', True, None)]
    modified = second.wait_for(of('b', 'MODIFIED'), what='b')
    assert modified['old'] == printed_b
    assert modified['diff'] == [{'op': 'replace', 'path': '/metadata/generation', 'value': 2},
                                {'op': 'replace', 'path': '/spec/replicas', 'value': 5}]
    # RESYNC covers a (confirmed by the listing), never c.
    second.wait_for(of('a', 'RESYNC'), what='RESYNC of the unchanged one')
    assert second.matching(of('c', 'RESYNC')) == []


def test_a_crash_between_saves_repeats_at_most_marked_events(
        driver: Driver, start: Start, tmp_path: pathlib.Path) -> None:
    namespace = driver.namespace('crashes')
    a = driver.create(namespace, 'a')
    path = tmp_path / 'state.json'
    env = {'DEPLOYWATCH_STATE_FILE': str(path), 'DEPLOYWATCH_RESYNC_SECONDS': '0'}
    first = start(f'--namespace={namespace}', env=env)
    first.wait_for(of('a', 'ADDED'), what='ADDED')
    eventually(lambda: _saved_version(path, a['metadata']['uid']) == a['metadata']['resourceVersion'],
               what='a saved')
    before_the_change = path.read_bytes()  # written whole (atomic rename): the file a crash leaves
    driver.scale(namespace, 'a', 9)
    modified = first.wait_for(of('a', 'MODIFIED'), what='MODIFIED, then killed before it is saved')
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    # Saves happen once a second: whether one slipped in between the MODIFIED and the kill is the
    # machine's timing. The file the kill leaves when none did, put back, makes it always the case.
    path.write_bytes(before_the_change)
    assert _saved_version(path, a['metadata']['uid']) == a['metadata']['resourceVersion'] \
        != modified['resourceVersion']

    second = start(f'--namespace={namespace}', env=env)
    repeat = second.wait_for(of('a', 'MODIFIED'), what='the unsaved change, derived again')
    assert repeat['inferred'] is True and repeat['resourceVersion'] == modified['resourceVersion']
    assert wait_until_consistent(second, driver.truth, namespaces={namespace}, before=first.events) == []
    assert all(e.get('inferred') for e in second.matching(of('a')))


def test_a_torn_state_file_is_reported_and_ignored(
        driver: Driver, start: Start, tmp_path: pathlib.Path) -> None:
    namespace = driver.namespace('torn')
    driver.create(namespace, 'a')
    path = tmp_path / 'state.json'
    path.write_text('{"format": "deploywatch-state/1", "checksum": "abc", "objects": {"u-1": {')

    operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_STATE_FILE': str(path)})

    assert operator.wait_for(of('a', 'ADDED'), what='ADDED as at a first start')['initial'] is True
    assert 'torn or corrupt' in operator.stderr
    assert wait_until_consistent(operator, driver.truth, namespaces={namespace}) == []


def test_without_a_state_file_a_restart_prints_everything_as_initial(driver: Driver, start: Start) -> None:
    namespace = driver.namespace('plain')
    for name in ('a', 'b'):
        driver.create(namespace, name)
    first = start(f'--namespace={namespace}')
    first.wait_for_count(lambda e: e['type'] == 'ADDED', 2, what='first run')
    assert first.stop() == 0

    second = start(f'--namespace={namespace}')
    added = second.wait_for_count(lambda e: e['type'] == 'ADDED', 2, what='second run')
    assert all(e['initial'] for e in added)
