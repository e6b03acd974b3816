"""
README, "Exit status": a background task that dies is one ERROR line on stderr and exit 1.

The state file's saver dying is played through the file system (test_state_file.py); the
RESYNC task reads only the tracker's memory, so its death is injected (dying_resync.py).
"""
import pathlib

from tests.harness.driver import Driver
from tests.harness.operator import of
from tests.robustness.conftest import Start

DYING_RESYNC = pathlib.Path(__file__).with_name('dying_resync.py')  # loaded by kopf run, never imported here
FAILURE_EXIT = 1
STOP = 30.0  # seconds: a bound on the operator stopping by itself, never reached when it works


def test_the_resync_task_dying_is_one_error_line_and_exit_1(driver: Driver, start: Start) -> None:
    namespace = driver.namespace('dying')
    driver.create(namespace, 'a')
    operator = start(str(DYING_RESYNC), f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0.2'})
    operator.wait_for(of('a', 'RESYNC'), what='the one RESYNC line before the task dies')

    assert operator.process.wait(timeout=STOP) == FAILURE_EXIT, operator.stderr
    errors = [line for line in operator.stderr.splitlines() if 'ERROR' in line]
    assert len(errors) == 1 and 'RESYNC failed (RuntimeError: RESYNC died on purpose' in errors[0], errors
    assert 'Traceback' not in operator.stderr, operator.stderr
    assert [e['type'] for e in operator.events] == ['ADDED', 'RESYNC']
