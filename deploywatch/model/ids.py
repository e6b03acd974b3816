"""
A stable identifier for each event (``id``), and the RESYNC rounds it names.

A consumer that reads the streams of two replicas (peering hands the lead over),
or one replica before and after a restart, meets the same change twice and wants
to drop one copy by one field. So an id is computed from the change itself, never
from anything a process holds (a counter, a random number, the time it saw it):

    <uid>:<resourceVersion>:<TYPE>            ADDED, MODIFIED, DELETED
    <uid>:<resourceVersion>:RESYNC:<round>    RESYNC

The uid tells recreated Deployments apart, the resourceVersion the states of one,
and the type an ADDED from a MODIFIED of the same state (a listing after a
restart without a state file prints ADDED for what a watch printed as MODIFIED).
Inferred events get their id by the same rule: a MODIFIED inferred from a listing
names the state it found, which is the id a replica that saw the watch event
printed for it. (An inferred DELETED names the last state known, since the
deletion's own resourceVersion was never seen.)

A RESYNC re-announces a state, so its round must be in the id, and a round
must be a fact two replicas agree on: a count of rounds is not (one started
later), and neither is the moment a round happened to run. Rounds are
therefore slots of wall-clock time: round *n* is due at ``n * interval``
seconds after the Unix epoch, every replica with the same interval sleeps
until the next such instant (:func:`next_round`), and the id carries *n*, not
the time of printing, so a replica that runs late, or whose clock is off by
less than half an interval, still names the same round.

A uid or resourceVersion missing from a hostile object is replaced by
``namespace/name`` and the empty string, so that every event still has an id.
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

