"""
tests/harness/truth.py on crafted streams: the checker of every robustness test must
flag what the README says the stream never does, and pass what it says it may do.
"""
import datetime
import json
from typing import Any

from deploywatch.model import events, objects
from deploywatch.model.events import EventType
from deploywatch.testing import factory
from tests.harness.truth import mismatches

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
Event = dict[str, Any]


def state(name: str, version: str, *, replicas: int = 1, namespace: str = 'ns') -> dict[str, Any]:
    raw = factory.deployment(name, namespace=namespace, replicas=replicas)
    raw['metadata'].update(uid=f'uid-{name}', resourceVersion=version)
    return objects.clean(raw, redact=True)


def line(kind: str, obj: dict[str, Any], **fields: Any) -> Event:
    """The line as a reader parses it."""
    built = events.build(type=EventType(kind), obj=obj, observed=NOW, **fields)
    parsed: Event = json.loads(json.dumps(built))
    return parsed


def server(*states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {obj['metadata']['uid']: obj for obj in states}


A1, A2, A3 = state('a', '1'), state('a', '2', replicas=2), state('a', '3', replicas=3)
B1, B5 = state('b', '4'), state('b', '5')


def test_a_stream_as_the_readme_describes_it_matches() -> None:
    """Listing, watch, RESYNC rounds, a relist's inferred MODIFIED and DELETED."""
    stream = [line('ADDED', A1, initial=True), line('ADDED', B1, initial=True),
              line('MODIFIED', A2, old=A1), line('RESYNC', A2, slot=7), line('RESYNC', B1, slot=7),
              line('MODIFIED', A3, old=A2, inferred=True), line('DELETED', B1, inferred=True),
              line('RESYNC', A3, slot=8)]
    assert mismatches(stream, server(A3)) == []


def test_a_relist_that_prints_added_initial_again_is_a_problem() -> None:
    """The fault the old checker let through: ``initial: true`` after the object's earlier lines."""
    stream = [line('ADDED', A1, initial=True), line('MODIFIED', A2, old=A1),
              line('ADDED', A2, initial=True)]
    assert mismatches(stream, server(A2)) == ['ns/a: uid-a:2:ADDED prints again what the same run printed',
                                              'ns/a: ADDED after other lines of the same run (initial: True)']


def test_a_duplicate_line_is_a_problem_whatever_its_type() -> None:
    """A RESYNC of the same round, or an inferred MODIFIED, printed twice in one run."""
    resync = line('RESYNC', A2, slot=7)
    inferred = line('MODIFIED', A2, old=A1, inferred=True)
    stream = [line('ADDED', A1, initial=True), inferred, resync, inferred, resync]
    assert mismatches(stream, server(A2)) == [
        f"ns/a: {inferred['id']} prints again what the same run printed",
        'ns/a: MODIFIED at 2: old is not the last state printed',
        f"ns/a: {resync['id']} prints again what the same run printed",
    ]


def test_lines_no_listing_or_watch_could_have_caused_are_problems() -> None:
    """A DELETED of an object never added, a line outside the namespaces watched, a type the schema lacks."""
    outside = state('c', '5', namespace='elsewhere')
    unknown = {**line('RESYNC', A1, slot=1), 'type': 'BOOKMARK'}
    stream = [line('ADDED', A1, initial=True), line('DELETED', B1), line('ADDED', outside, initial=True),
              unknown]
    assert mismatches(stream, server(A1), namespaces={'ns'}) == [
        'elsewhere/c: ADDED outside the namespaces watched',
        'ns/a: unknown type BOOKMARK',
        'ns/b: DELETED before any ADDED',
    ]


def test_a_restart_with_the_state_file_continues_the_stream() -> None:
    """
    The run before printed a2 and b's DELETED but was killed before saving them: the next
    run derives both again from its listing (marked), and prints no ADDED for what it restored.
    """
    before = [line('ADDED', A1, initial=True), line('ADDED', B1, initial=True), line('MODIFIED', A2, old=A1),
              line('DELETED', B5)]
    again = [line('MODIFIED', A2, old=A1, inferred=True), line('DELETED', B1, inferred=True),
             line('RESYNC', A2, slot=9)]
    assert mismatches(again, server(A2), before=before) == []


def test_only_a_marked_first_line_may_repeat_the_run_before() -> None:
    before = [line('ADDED', A1, initial=True), line('MODIFIED', A2, old=A1), line('ADDED', B1, initial=True),
              line('DELETED', B5)]
    repeated = [line('RESYNC', A2, slot=9), line('MODIFIED', A2, old=A1, inferred=True), line('DELETED', B1)]
    assert mismatches(repeated, server(A2), before=before) == [
        "ns/a: uid-a:2:MODIFIED prints again what the run before printed",
        'ns/a: MODIFIED at 2: old is not the last state printed',
        'ns/b: DELETED at 4 after its DELETED',
    ]


def test_a_restart_with_the_state_file_prints_nothing_again_unmarked_or_as_added() -> None:
    before = [line('ADDED', A1, initial=True), line('ADDED', B1, initial=True), line('MODIFIED', A2, old=A1)]
    reprinted = [line('ADDED', A2, initial=True), line('MODIFIED', B1, old=B1)]
    assert mismatches(reprinted, server(A2, B1), before=before) == [
        'ns/a: uid-a:2:ADDED prints again what the run before printed',
        'ns/a: ADDED after other lines of the run before (initial: True)',
        'ns/b: uid-b:4:MODIFIED prints again what the run before printed',
    ]
