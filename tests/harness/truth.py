"""
The stream compared with the ground truth the API server holds: every line, to the end.

What "nothing lost, nothing invented" means, checked line by line:

* every line is an event of one of the four types, about a Deployment in the
  namespaces watched;
* every Deployment alive in the server is printed, and the last state printed
  for it is its current one (same resourceVersion);
* every Deployment the stream printed and that no longer exists has a DELETED,
  and nothing about it follows that DELETED;
* an object's first line is its ADDED, and it has no other: a listing prints
  ``initial: true`` for what it has not printed yet, nothing for what it has;
* nothing is printed twice: no state (resourceVersion) as ADDED or MODIFIED, no
  DELETED, no RESYNC round;
* a MODIFIED's ``old`` is the state printed last for that object, so the chain
  of diffs replays its history as the stream told it; RESYNC repeats that state.

A run is one operator process. A run with the state file of the run ``before``
it continues that stream (README: the same holds across restarts): it prints no
ADDED for what was printed and saved, and a change printed but not yet saved when
the run before was killed is derived again from the listing, marked ``inferred``,
as the object's first line in the new run, from a state printed before. A run
without a state file starts over, every Deployment ADDED again: it is checked alone.

Matching the server once proves nothing about the lines after:
:func:`wait_until_consistent` waits for that moment and leaves the operator
running; :func:`to_the_end` stops it, reads its stdout to the end and checks every
line again. The ``start`` fixtures call it for every operator when the test ends.
"""
import dataclasses
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from tests.harness.operator import OperatorProcess

Event = dict[str, Any]
Truth = dict[str, dict[str, Any]]  # uid -> the object as the server holds it now
TYPES = ('ADDED', 'MODIFIED', 'DELETED', 'RESYNC')
# A real cluster's run (make e2e): the server read at the end may have moved on from both the
# last match and the stop, so the end-of-test check keeps the rules of the lines only.
REAL = bool(os.environ.get('DEPLOYWATCH_E2E_KUBECONFIG'))


@dataclasses.dataclass(frozen=True)
class _Claim:
    """What a test said the operator's stream matches; checked again at its end."""
    truth: Callable[[], Truth]
    namespaces: set[str] | None
    before: Sequence[Event]
    timeout: float


_claims: dict[OperatorProcess, _Claim] = {}


def mismatches(events: Sequence[Event], truth: Truth, *, namespaces: set[str] | None = None,
               before: Sequence[Event] = ()) -> list[str]:
    """The problems of one run's ``events``, continuing the run ``before`` it, against ``truth``."""
    return [*_lines(events, namespaces=namespaces, before=before),
            *_server([*before, *events], truth, namespaces)]


def wait_until_consistent(operator: OperatorProcess, truth: Callable[[], Truth], *,
                          namespaces: set[str] | None = None, before: Sequence[Event] = (),
                          timeout: float = 90.0) -> list[str]:
    """
    Wait for the stream so far to match the server; the problems left, if any.

    The operator keeps running; :func:`to_the_end` checks the same claim on every line.
    """
    claim = _Claim(truth, namespaces, before, timeout)
    _claims[operator] = claim
    return _wait(operator, claim)[0]


def to_the_end(operator: OperatorProcess) -> list[str]:
    """
    Stop the operator (SIGTERM, stdout read to EOF); the problems of every line it printed.

    Still running, it must match its claim again, then exit 0; the server read before the
    stop or after it will do (a real cluster's controllers may write in between). Stopped
    already, by the test, every rule holds but the comparison with a server that has moved
    on since. An operator never claimed consistent is only stopped.
    """
    claim = _claims.pop(operator, None)
    running = operator.process.poll() is None
    matched = _wait(operator, claim)[1] if claim is not None and running else None
    code = operator.stop()
    if claim is None:
        return []
    events, problems = _printed(operator)
    if not operator.at_eof:
        problems.append('stdout not read to its end')
    if not running:
        return [*problems, *_lines(events, namespaces=claim.namespaces, before=claim.before)]
    if code != 0:
        problems.append(f'exit status {code} after SIGTERM')
    if REAL:  # its controllers may write between the last match and the stop: the lines' rules only
        return [*problems, *_lines(events, namespaces=claim.namespaces, before=claim.before)]
    found = mismatches(events, claim.truth(), namespaces=claim.namespaces, before=claim.before)
    if found and matched is not None and not mismatches(events, matched, namespaces=claim.namespaces,
                                                        before=claim.before):
        found = []
    return [*problems, *found]


def all_to_the_end(started: Sequence[OperatorProcess]) -> list[str]:
    """:func:`to_the_end` for each operator a test started (by its stderr's name); all stopped, whatever."""
    try:
        return [f'{process.stderr_path.name}: {problem}'
                for process in started for problem in to_the_end(process)]
    finally:
        for process in started:
            process.stop()


def _wait(operator: OperatorProcess, claim: _Claim) -> tuple[list[str], Truth | None]:
    """The problems left and, once there are none, the truth matched."""
    deadline = time.monotonic() + claim.timeout
    while True:
        events, wrong = _printed(operator)
        wrong += _lines(events, namespaces=claim.namespaces, before=claim.before)
        truth = claim.truth()
        problems = [*wrong, *_server([*claim.before, *events], truth, claim.namespaces)]
        if not problems:
            return [], truth
        if wrong or time.monotonic() > deadline:  # a line wrong now stays wrong
            return problems, None
        time.sleep(0.2)


def _printed(operator: OperatorProcess) -> tuple[list[Event], list[str]]:
    """The events so far, and the lines that were none (not JSON, or not valid against the schema)."""
    try:
        return operator.matching(lambda _: True), []
    except AssertionError as invalid:  # OperatorProcess.check's, with the list of them
        return list(operator.events), [str(problem) for problem in invalid.args[0]]


def _name(event: Event) -> str:
    return f"{event['namespace']}/{event['name']}"


def _lines(events: Sequence[Event], *, namespaces: set[str] | None, before: Sequence[Event]) -> list[str]:
    """The problems a later line cannot mend."""
    problems: list[str] = []
    histories: dict[str, list[tuple[int, Event]]] = defaultdict(list)
    for run, stream in enumerate((before, events)):
        for event in stream:
            if event['type'] not in TYPES:
                problems.append(f"{_name(event)}: unknown type {event['type']}")
            elif namespaces is not None and event['namespace'] not in namespaces:
                problems.append(f"{_name(event)}: {event['type']} outside the namespaces watched")
            else:
                histories[event['uid']].append((run, event))
    for history in histories.values():
        problems.extend(_chain(history))
    return problems


def _chain(history: list[tuple[int, Event]]) -> list[str]:
    """The order rules of one object's lines, each with its run (0: ``before``, 1: this one)."""
    name = _name(history[0][1])
    problems: list[str] = []
    states: list[Any] = []  # every state printed for the object, in order
    printed: dict[tuple[str, ...], int] = {}  # what was printed, and by which run
    deleted = False
    last_run = None
    for run, event in history:
        kind, version = event['type'], event['resourceVersion']
        first_in_run = run != last_run
        # The first line of a continuing run may derive again what the run before printed, marked.
        again = first_in_run and last_run is not None and bool(event.get('inferred'))
        last_run = run
        key = (kind, event['id'], str(run)) if kind == 'RESYNC' else (
            'state' if kind in ('ADDED', 'MODIFIED') else kind, version)
        if key in printed and not (again and printed[key] < run):
            of = 'the same run' if printed[key] == run else 'the run before'
            problems.append(f"{name}: {event['id']} prints again what {of} printed")
        printed.setdefault(key, run)
        if deleted and not (again and kind == 'DELETED'):
            problems.append(f'{name}: {kind} at {version} after its DELETED')
        if kind == 'ADDED' and states:
            of = 'the run before' if first_in_run else 'the same run'
            problems.append(f"{name}: ADDED after other lines of {of} (initial: {event['initial']})")
        elif kind != 'ADDED' and not states:
            problems.append(f'{name}: {kind} before any ADDED')
        elif kind == 'MODIFIED' and event['old'] not in (states if again else states[-1:]):
            problems.append(f'{name}: MODIFIED at {version}: old is not the last state printed')
        elif kind == 'RESYNC' and event['object'] != states[-1]:
            problems.append(f'{name}: RESYNC at {version} differs from the last printed state')
        deleted = deleted or kind == 'DELETED'
        if kind in ('ADDED', 'MODIFIED'):
            states.append(event['object'])
    return problems


def _server(events: Sequence[Event], truth: Truth, namespaces: set[str] | None) -> list[str]:
    """The problems a later line may mend: the stream behind the server."""
    problems: list[str] = []
    last: dict[str, Event] = {}
    deleted: set[str] = set()
    for event in events:
        if event['type'] not in TYPES or (namespaces is not None and event['namespace'] not in namespaces):
            continue  # a problem of its own (_lines)
        last[event['uid']] = event
        if event['type'] == 'DELETED':
            deleted.add(event['uid'])
    in_scope = {uid: obj for uid, obj in truth.items()
                if namespaces is None or obj['metadata']['namespace'] in namespaces}
    for uid, obj in in_scope.items():
        name = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        if uid not in last:
            problems.append(f'{name}: alive but never printed')
        elif last[uid]['type'] == 'DELETED':
            problems.append(f'{name}: alive but its last event is DELETED')
        elif last[uid]['resourceVersion'] != obj['metadata']['resourceVersion']:
            problems.append(f"{name}: last printed version {last[uid]['resourceVersion']}, "
                            f"server has {obj['metadata']['resourceVersion']}")
    for uid, event in last.items():
        if uid not in in_scope and uid not in deleted:
            problems.append(f'{_name(event)}: gone from the server but no DELETED was printed')
    return problems
