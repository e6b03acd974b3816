"""
A stable identifier for each event (``id``), and the RESYNC rounds it names.

A consumer of two replicas' streams, or of one before and after a restart, meets the
same change twice and drops one copy by ``id``. So an id is computed from the change,
never from anything a process holds (a counter, a random number, the time it saw it):

    <uid>:<resourceVersion>:<TYPE>            ADDED, MODIFIED, DELETED
    <uid>:<resourceVersion>:RESYNC:<round>    RESYNC

The type tells an ADDED from a MODIFIED of the same state (a listing after a restart
prints ADDED for what a watch printed as MODIFIED). An inferred event names the state
it found; an inferred DELETED the last state known. A hostile object without a uid or
resourceVersion gets ``namespace/name`` and the empty string.

A RESYNC round must be a fact two replicas agree on, so rounds are slots of Unix time:
round *n* is due at ``n * interval`` seconds, every replica sleeps until the next one
(:func:`next_round`), and the id carries *n*, so a replica that runs late, or whose
clock is off by less than half an interval, names the same round.
"""
import math


def event_id(*, type: str, uid: str | None, resource_version: str | None,
             namespace: str | None, name: str | None, slot: int | None = None) -> str:
    """The id of one event (see the module's docstring); ``slot``, the round, only for RESYNC."""
    subject = uid if uid else f'{namespace}/{name}'
    parts = [subject, resource_version or '', type]
    if type == 'RESYNC' and slot is not None:
        parts.append(str(slot))
    return ':'.join(parts)


def next_round(now: float, interval: float) -> tuple[float, int]:
    """
    From Unix time ``now``: how long to sleep until the next round is due, and its number.

    The number is that of the slot boundary, so a wake-up a little late (a busy
    loop) or a little early (a coarse timer) cannot change it.
    """
    slot = math.floor(now / interval) + 1
    return max(0.0, slot * interval - now), slot

