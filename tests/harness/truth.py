"""
The stream compared with the ground truth the emulated API server holds.

What "nothing lost, nothing invented" means, checked event by event:

* every Deployment alive in the server is printed, and the last state printed
  for it is its current one (same resourceVersion);
* every Deployment the stream ever printed and that no longer exists has a
  DELETED, exactly one, and nothing about it follows that DELETED;
* a MODIFIED's ``old`` is the state printed before it for that object, so the
  chain of diffs replays the object's history as the stream told it; RESYNC
  repeats the last printed state, never a new one;
* ADDED comes first and once per object, and no (type, resourceVersion) is
  repeated for an object.
"""
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from tests.harness.operator import OperatorProcess

Event = dict[str, Any]
Truth = dict[str, dict[str, Any]]  # uid -> the object as the server holds it now


def mismatches(events: list[Event], truth: Truth, *, namespaces: set[str] | None = None) -> list[str]:
    problems: list[str] = []
    by_uid: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_uid[event['uid']].append(event)
    in_scope = {uid: obj for uid, obj in truth.items()
                if namespaces is None or obj['metadata']['namespace'] in namespaces}

    for uid, obj in in_scope.items():
        name = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        history = by_uid.get(uid)
        if not history:
            problems.append(f'{name}: alive but never printed')
            continue
        last = history[-1]
        if last['type'] == 'DELETED':
            problems.append(f'{name}: alive but its last event is DELETED')
        elif last['resourceVersion'] != obj['metadata']['resourceVersion']:
            problems.append(f"{name}: last printed version {last['resourceVersion']}, "
                            f"server has {obj['metadata']['resourceVersion']}")

    for uid, history in by_uid.items():
        name = f"{history[0]['namespace']}/{history[0]['name']}"
        deleted = [i for i, e in enumerate(history) if e['type'] == 'DELETED']
        if uid not in in_scope and not deleted:
            problems.append(f'{name}: gone from the server but no DELETED was printed')
        if len(deleted) > 1:
            problems.append(f'{name}: {len(deleted)} DELETED events')
        if deleted and deleted[0] != len(history) - 1:
            problems.append(f"{name}: events after DELETED: {[e['type'] for e in history[deleted[0]:]]}")
        problems.extend(_chain(name, history))
    return problems


def _chain(name: str, history: list[Event]) -> list[str]:
    """
    The per-object order rules. An ``inferred`` event may repeat one already printed:
    after a crash between two saves of the state file, the next run re-derives the last
    changes from the listing, with ``old`` the saved (earlier) state, marked so.
    """
    problems: list[str] = []
    states: list[Any] = []  # every state printed for the object, in order
    seen: set[tuple[str, str]] = set()
    for event in history:
        kind, version, inferred = event['type'], event['resourceVersion'], event.get('inferred', False)
        if kind != 'RESYNC':
            if (kind, version) in seen and not inferred:
                problems.append(f'{name}: {kind} at {version} printed twice, unmarked')
            seen.add((kind, version))
        if kind == 'ADDED' and states and not event['initial']:
            problems.append(f'{name}: ADDED after other events')
        if kind in ('MODIFIED', 'RESYNC') and not states:
            problems.append(f'{name}: {kind} before any ADDED')
        if (kind == 'MODIFIED' and states and event['old'] != states[-1]
                and not (inferred and event['old'] in states)):
            problems.append(f'{name}: MODIFIED at {version}: old is not a state printed before')
        if kind == 'RESYNC' and states and event['object'] != states[-1]:
            problems.append(f'{name}: RESYNC at {version} differs from the last printed state')
        if kind in ('ADDED', 'MODIFIED'):
            states.append(event['object'])
    return problems


def wait_until_consistent(operator: OperatorProcess, truth: Callable[[], Truth], *,
                          namespaces: set[str] | None = None, before: list[Event] = (),  # type: ignore[assignment]
                          timeout: float = 90.0) -> list[str]:
    """
    Wait for the stream to catch up with the server; the remaining mismatches, if any.

    ``before`` is what earlier runs printed (a restart continues their stream, as
    an audit store that received both sees it).
    """
    deadline = time.monotonic() + timeout
    while True:
        problems = mismatches([*before, *operator.matching(lambda _: True)], truth(), namespaces=namespaces)
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.2)
