"""
tests/harness/truth.py to the end of a process's stdout: the lines printed after the
stream first matched the server are checked too.

The process prints crafted lines (built as in tests/unit/test_truth.py) at once, and
more only when it is stopped: lines that come after the first match by construction.
"""
import json
import pathlib
import sys

from tests.harness.operator import Event, OperatorProcess
from tests.harness.truth import to_the_end, wait_until_consistent
from tests.unit.test_truth import A1, A2, line, server

PRINTER = '''
import signal, sys

def end(*_):
    sys.stdout.write(open(sys.argv[2]).read())
    sys.exit(0)

signal.signal(signal.SIGTERM, end)
sys.stdout.write(open(sys.argv[1]).read())
sys.stdout.flush()
while True:
    signal.pause()
'''


def printer(tmp_path: pathlib.Path, first: list[Event], late: list[Event]) -> OperatorProcess:
    """Prints ``first`` at once, and ``late`` when SIGTERM comes."""
    paths = {part: tmp_path / f'{part}.jsonl' for part in ('first', 'late')}
    for part, lines in (('first', first), ('late', late)):
        paths[part].write_text(''.join(json.dumps(event) + '\n' for event in lines))
    return OperatorProcess(command=[sys.executable, '-c', PRINTER, str(paths['first']), str(paths['late'])],
                           environment={}, stderr_path=tmp_path / 'printer.stderr')


def test_a_duplicate_printed_after_the_first_match_is_a_problem(tmp_path: pathlib.Path) -> None:
    modified = line('MODIFIED', A2, old=A1)
    process = printer(tmp_path, [line('ADDED', A1, initial=True), modified], [modified])
    assert wait_until_consistent(process, lambda: server(A2)) == []  # the first match
    assert to_the_end(process) == [f"ns/a: {modified['id']} prints again what the same run printed",
                                   'ns/a: MODIFIED at 2: old is not the last state printed']
    assert len(process.events) == 3


def test_a_relist_that_prints_added_again_after_the_first_match_is_a_problem(tmp_path: pathlib.Path) -> None:
    process = printer(tmp_path, [line('ADDED', A1, initial=True), line('MODIFIED', A2, old=A1)],
                      [line('ADDED', A2, initial=True)])
    assert wait_until_consistent(process, lambda: server(A2)) == []
    assert to_the_end(process) == ['ns/a: uid-a:2:ADDED prints again what the same run printed',
                                   'ns/a: ADDED after other lines of the same run (initial: True)']


def test_lines_after_the_first_match_that_keep_the_promises_pass(tmp_path: pathlib.Path) -> None:
    process = printer(tmp_path, [line('ADDED', A1, initial=True), line('MODIFIED', A2, old=A1)],
                      [line('RESYNC', A2, slot=1), line('RESYNC', A2, slot=2)])
    assert wait_until_consistent(process, lambda: server(A2)) == []
    assert to_the_end(process) == []
    assert [e['type'] for e in process.events] == ['ADDED', 'MODIFIED', 'RESYNC', 'RESYNC']


def test_a_line_that_is_no_event_after_the_first_match_is_a_problem(tmp_path: pathlib.Path) -> None:
    process = printer(tmp_path, [line('ADDED', A2, initial=True)],
                      [{**line('RESYNC', A2, slot=1), 'type': 'BOOKMARK'}])
    assert wait_until_consistent(process, lambda: server(A2)) == []
    problems = to_the_end(process)
    assert len(problems) == 1 and problems[0].startswith("invalid line b'{"), problems
    assert "'BOOKMARK' is not one of ['ADDED', 'MODIFIED', 'DELETED', 'RESYNC']" in problems[0], problems
