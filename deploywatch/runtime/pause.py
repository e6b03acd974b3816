"""
Peering's pause and stdout's, as they reach the stream (docs/design.md, "Pause, peering
and hand-over").

Kopf pauses a paused operator (``operator_paused``: peering puts a toggle there per
peering object) and hands that toggle set to each watch it starts; the loop hands it on
here, where it is read through its public calls (``is_on``, ``wait_for``). While any
toggle is on, this replica is a standby: its Deployment watches go on (its memory follows
the cluster), but it prints only the DELETED of what it printed. When it leads again, it
prints what a start would. The Deployment watches pause only on :attr:`Pause.gate`,
closed while stdout is behind.
"""
import collections
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from deploywatch.kube.loop import Gate
from deploywatch.model.tracker import Tracker
from deploywatch.output.spool import HIGH_WATER

logger = logging.getLogger('deploywatch')

STANDBY_MEMORY = 180.0  # seconds a standby keeps the DELETED lines it saw: longer than a peering hand-over


class Spooled(Protocol):
    """What the pause reads of the writer's spool."""
    @property
    def pending(self) -> int: ...
    @property
    def peak(self) -> int: ...
    @property
    def stopped(self) -> bool: ...
    async def room(self) -> None: ...


class Pause:
    """
    ``leading`` is whether no toggle of Kopf's is on: whether this replica prints. ``deleted``
    holds the DELETED lines of a standby, for :data:`STANDBY_MEMORY` seconds: the replica that
    led may have stopped before it saw them. ``gate`` pauses the Deployment watches while stdout
    is behind; peering does not pause them.
    """

    def __init__(self, *, spool: Spooled, tracker: Tracker, write: Callable[[dict[str, Any], str], None],
                 start: Callable[[Coroutine[Any, Any, None], str], None]) -> None:
        self.spool = spool
        self.tracker = tracker
        self.write = write
        self.start = start
        self.toggles: Any = None  # Kopf's operator_paused, once a watch handed it over
        self.gate = Gate()
        self.caught_up = -math.inf  # when stdout last caught up (monotonic): never behind yet
        self.leading = True
        self.deleted: collections.deque[tuple[float, str, dict[str, Any]]] = collections.deque()

    async def attach(self, toggles: Any) -> None:
        """Kopf's operator pause, handed over by each watch Kopf starts: followed from the first."""
        if self.toggles is not None:
            return
        self.toggles = toggles
        self.leading = not toggles.is_on()  # a standby from its start: its listing is not printed
        self.start(self._follow(toggles), 'the pause follower')

    def missed(self, line: dict[str, Any], key: str) -> None:
        """A line a standby does not print: a DELETED is kept a while, for a hand-over."""
        self._forget_old()
        if line['type'] == 'DELETED':
            self.deleted.append((time.monotonic(), key, line))

    def _forget_old(self) -> None:
        while self.deleted and self.deleted[0][0] < time.monotonic() - STANDBY_MEMORY:
            self.deleted.popleft()

    async def _follow(self, toggles: Any) -> None:
        while True:
            await toggles.wait_for(self.leading)  # paused while leading, or not while standing by
            self.leading = not self.leading
            if self.leading:
                logger.info("Not paused any more: printing again, from the current state of every "
                            "Deployment and what was deleted meanwhile.")
                await self._take_over()
            else:
                logger.info(f"Paused by Kopf (peering: another replica leads): the {self.spool.pending} "
                            "bytes of lines not yet written are still written; nothing more is printed.")

    async def _take_over(self) -> None:
        """
        What a replica that starts to lead prints: the deletions it saw, then every Deployment.
        Written at once, with no turn of the loop in between: no event of a watch can come
        between two of these lines (and print a change before the ADDED it follows).
        """
        self._forget_old()
        deleted, self.deleted = self.deleted, collections.deque()
        for _, key, line in deleted:
            self.write(line, key)
        for key in self.tracker.uids():
            announced = self.tracker.announce(key)
            if announced is not None:
                self.write(announced, key)
        await self.spool.room()

    def behind(self, on: bool) -> None:
        """stdout fell behind (``on``) or caught up: the Deployment watches pause or resume."""
        if on:
            self.gate.close()
            logger.warning(f"stdout is not keeping up: over {HIGH_WATER // 2**20} MiB of lines wait to "
                           "be written. The Deployment watches pause until half of it is written; the "
                           "changes wait in the API server meanwhile, and nothing is lost.")
        else:
            self.gate.open()
            self.caught_up = time.monotonic()
            logger.warning(f"stdout is keeping up again (at most {self.spool.peak / 2**20:.1f} MiB waited): "
                           "the Deployment watches resume where they paused.")

    def kept_up(self) -> float:
        """
        For RESYNC: how long stdout has kept up, in seconds; 0 while it is behind or this replica
        stands by. The bytes are read too, not only the gate: the lines written within one turn
        of the loop wait for it to write them, and the spool tells of its pressure only then.
        """
        if (not self.leading or self.spool.stopped or self.gate.is_closed()
                or self.spool.pending >= HIGH_WATER):
            return 0.0
        return time.monotonic() - self.caught_up
