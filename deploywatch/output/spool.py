"""
Lines between the event loop and stdout: in stream order, in bounded memory, written by one thread.

A reader slower than the events must not stop the event loop: the loop also answers
Kopf's liveness probe, sends peering's keep-alive and reads the watch streams, which the
API server drops when they are not read. So the lines are built on the loop and one
thread waits for the reader. As the reader falls behind:

* up to :data:`HIGH_WATER` bytes of lines wait in memory; nothing else changes;
* beyond it, ``on_pressure(True)`` is called once (deploywatch pauses its Deployment
  watches: the changes wait in the API server), ``on_pressure(False)`` once half is written;
* beyond :data:`HARD_LIMIT` (a listing, which a paused watch does not stop, can reach it),
  the caller awaits :meth:`Spool.room`: memory stays bounded, the loop goes on turning.

Lines are dropped only once the reader is gone or stdout failed, or when the process stops
before they were written (:meth:`Spool.close` counts them). A line's ``commit`` is called
once it was written, in stream order, never for a line that was not: that is how the state
file learns what was printed, as opposed to what was meant to be.

Handing each line to the thread costs throughput (the GIL changes hands per line), and so
does a write per line (the reader wakes per line): so to a pipe with room, the loop writes
the lines gathered while it worked itself, in one non-blocking write when it turns
(``schedule``); everything else (a full pipe, a file, a terminal, or lines queued already)
goes through the thread, which writes all the lines waiting with one write, each whole.
"""
import asyncio
import collections
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from deploywatch.output.writer import LineWriter, Unwritten, whole_lines

HIGH_WATER = 4 * 1024 * 1024  # bytes of unwritten lines before the watches pause
HARD_LIMIT = 4 * HIGH_WATER  # bytes of unwritten lines before the caller awaits room

Commit = Callable[[], None]  # called once the line was written: the state file's ledger
Written = Callable[[str, bool], None]  # a line of this event type (and inferred or not) was written


class Entry(NamedTuple):
    """A line waiting in the spool, and what is done once it was written."""

    line: bytes  # b'' when nothing of the event is printed: its commit keeps its place in the order
    commit: Commit | None
    size: int  # bytes it holds in memory until written: the line's and what its commit keeps alive
    event_type: str
    inferred: bool


def _nothing(*_: Any) -> None:
    pass


class Spool:
    """
    The lines on their way to one :class:`LineWriter`, and the thread that writes them.

    :meth:`write` is called on the loop (it selects and encodes there, in order);
    ``on_pressure``, ``on_failure`` and ``on_written`` are called from either thread:
    the caller hands them over to its loop itself.
    """

    def __init__(
            self,
            writer: LineWriter,
            *,
            high_water: int = HIGH_WATER,
            hard_limit: int = HARD_LIMIT,
            on_pressure: Callable[[bool], None] = _nothing,
            on_failure: Callable[[OSError], None] = _nothing,
            on_written: Written = _nothing,
            schedule: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        self._writer = writer
        self._on_written = on_written
        self._high = high_water
        self._hard = max(hard_limit, high_water)
        self._on_pressure = on_pressure
        self._on_failure = on_failure
        self._queue: collections.deque[Entry] = collections.deque()
        self._rest: Entry | None = None  # the end of a line begun on the loop: written next, never dropped
        self._busy = False  # the thread holds lines it took: from taking them to their commits
        self._ready: list[Entry] = []  # lines for the loop to write itself (flush), when it turns
        self.schedule = schedule  # e.g. the loop's call_soon: how flush is called once the loop turns
        self._changed = threading.Condition()
        self._pending = 0  # bytes in the queue
        self._writing = 0  # lines taken from the queue and being written
        self._over = False  # on_pressure(True) was the last call
        self._closed = False
        self.stopped = False  # the reader is gone, or stdout failed: nothing is written any more
        self.dropped = 0  # lines not written: the reader gone, stdout failed, or the process stopped
        self.peak = 0  # the most bytes that ever waited
        self.waits = 0  # times room() had to wait for the thread (the hard limit)
        self._thread = threading.Thread(target=self._run, name='deploywatch stdout', daemon=True)
        self._thread.start()

    @property
    def blocked(self) -> float:
        """Seconds the thread spent writing to stdout."""
        return self._writer.blocked

    @property
    def pending(self) -> int:
        """Bytes of lines waiting to be written (and of what their commits hold)."""
        return self._pending

    def write(self, event: dict[str, Any], commit: Commit | None = None, *, held: int = 0) -> None:
        """
        Queue a line (and its commit, in order even when nothing of the event is printed).

        ``held``: bytes the commit keeps alive until it is called (the state it commits),
        counted in the bound with the line's own.
        """
        data = self._writer.line(event)
        if data is None and commit is None:
            return
        data = data or b''
        entry = Entry(line=data, commit=commit, size=len(data) + held,
                      event_type=event.get('type', ''), inferred=bool(event.get('inferred')))
        pressure = now = False
        with self._changed:
            if self.stopped or self._closed:
                self.dropped += bool(data)
                return
            if self._ready or (self._writer.at_once and not (self._queue or self._busy or self._rest)):
                self._ready.append(entry)  # for the loop to write itself, once it turns (flush)
                self._pending += entry.size
                schedule = self.schedule
                now = schedule is None  # no loop to wait for (tools, tests)
                if schedule is not None and len(self._ready) == 1:
                    schedule(self.flush)
            else:
                pressure = self._queue_up(entry)
        if now:
            self.flush()
        if pressure:
            self._on_pressure(True)

    def flush(self) -> None:
        """
        Write the lines gathered for the loop with one write, on the loop: what the pipe takes
        at once. The lines it took whole are committed; the rest of one it took in part is the
        thread's to write next (never dropped); those after it are queued for the thread.
        """
        with self._changed:
            ready, self._ready = self._ready, []
            if not ready:
                return
            self._pending -= sum(entry.size for entry in ready)
            lines = [entry.line for entry in ready]
            data = lines[0] if len(lines) == 1 else b''.join(lines)
            taken = self._writer.emit_now(data) if data else 0
            whole = whole_lines(lines, taken)
            if whole < len(ready):
                begun = taken - sum(map(len, lines[:whole]))
                later = ready[whole:]
                if begun > 0:
                    begun_entry = later.pop(0)
                    self._rest = begun_entry._replace(line=begun_entry.line[begun:],
                                                      size=begun_entry.size - begun)
                    self._pending += self._rest.size
                    self._changed.notify_all()
                pressure = any([self._queue_up(entry) for entry in later])
            else:
                pressure = False
            self._changed.notify_all()  # room() may be waiting for what the loop just wrote
        for entry in ready[:whole]:  # outside the lock, in order: nothing waits
            self._written(entry)
        if pressure:
            self._on_pressure(True)

    def _queue_up(self, entry: Entry) -> bool:
        """Queue a line for the thread (under the lock); whether the pause is called for now."""
        self._queue.append(entry)
        self._pending += entry.size
        self.peak = max(self.peak, self._pending)
        pressure = not self._over and self._pending > self._high
        self._over = self._over or pressure
        if len(self._queue) == 1:  # the thread waits only for an empty queue to fill
            self._changed.notify_all()
        return pressure

    async def room(self) -> None:
        """
        Wait, while the loop goes on turning, until no more than the hard limit waits to be
        written (or nothing will be written any more); at once if it does not.
        """
        if self._pending > self._hard and not (self.stopped or self._closed):
            self.waits += 1
            await asyncio.to_thread(self._wait_for_room)

    def _wait_for_room(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._pending <= self._hard or self.stopped or self._closed)

    def close(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the lines to be written; how many were not."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._queue.extend(self._ready)  # gathered for a loop that may not turn again: the thread's
            self._ready.clear()
            self._changed.notify_all()
            self._changed.wait_for(lambda: not (self._queue or self._busy or self._rest) or self.stopped,
                                   timeout=max(0.0, deadline - time.monotonic()))
            self._closed = True
            left = sum(1 for entry in self._queue if entry.line) + self._writing + (self._rest is not None)
            self._queue.clear()
            self._pending = 0
            self._changed.notify_all()
        return left

    def _drop(self) -> int:
        dropped = sum(1 for entry in (*self._ready, *self._queue) if entry.line)
        self._ready.clear()
        self._queue.clear()
        self._pending = self._rest.size if self._rest is not None else 0  # the line in flight is kept
        self.dropped += dropped
        return dropped

    def _release(self) -> bool:
        """Whether the pressure is off now (and was on): the caller calls on_pressure(False)."""
        if self._over and self._pending <= self._high // 2:
            self._over = False
            return True
        return False

    def _written(self, entry: Entry) -> None:
        if entry.line:
            self._on_written(entry.event_type, entry.inferred)
        if entry.commit is not None:
            entry.commit()

    def _take(self) -> list[Entry]:
        """
        The rest of a line begun on the loop, alone; else the lines waiting now, the first
        always, the others up to what the writer has room for.
        """
        if self._rest is not None:
            taken, self._rest = [self._rest], None
            return taken
        limit = self._writer.room()
        taken = [self._queue.popleft()]
        size = len(taken[0].line)
        while self._queue and size + len(self._queue[0].line) <= limit:
            size += len(self._queue[0].line)
            taken.append(self._queue.popleft())
        return taken

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._queue) or self._rest is not None or self._closed)
                if not self._queue and self._rest is None:
                    return
                batch = self._take()
                self._busy = True
                self._pending -= sum(entry.size for entry in batch)
                self._writing = sum(1 for entry in batch if entry.line)
                released = self._release()
                self._changed.notify_all()
            if released:
                self._on_pressure(False)
            failure: OSError | None = None
            try:
                written = self._writer.emit_many([entry.line for entry in batch])
            except Unwritten as unwritten:
                failure, written = unwritten.error, unwritten.written
            with self._changed:
                self._writing = 0
            for entry in batch[:written]:
                self._written(entry)
            with self._changed:
                self._busy = False  # the loop may write at once again: every line taken is committed
                self._changed.notify_all()
            if failure is not None:
                self._stop()
                self._on_failure(failure)
                return
            if written < len(batch):  # the reader is gone: the process is stopping
                self._stop()
                return

    def _stop(self) -> None:
        with self._changed:
            self.stopped = True
            self._writing = 0
            self._rest = None
            self._drop()
            released = self._release()
            self._changed.notify_all()
        if released:
            self._on_pressure(False)
