"""
The one writer of stdout: one JSON object per line, flushed per line, never waiting on the event loop.

stdout belongs to the event stream alone (Kopf's and our logs go to stderr), so
everything that writes there goes through :class:`LineWriter`. Each line is
written and flushed whole, so a reader (``jq``, Fluent Bit, a pipe into a file)
never sees half a line and sees every line as soon as it is built.

A reader slower than the events must not stop the operator's event loop: the
loop also answers Kopf's liveness probe, sends the peering keep-alive and reads
the watch streams, which the API server drops when they are not read. So the
lines go through a :class:`Spool`: built and encoded on the loop, in stream
order, kept in a bounded amount of memory, and written by one thread, which is
the one that waits when the reader does (the loop writes only what a pipe takes
at once: see below). What happens as the reader falls
behind, in order:

* up to :data:`HIGH_WATER` bytes of lines wait in memory; nothing else changes;
* beyond it, ``on_pressure(True)`` is called once (deploywatch pauses its
  Deployment watches there: the changes then wait in the API server, and the
  watches resume where they stopped, ``on_pressure(False)``, when half of it is
  written). A few lines already read from the network still arrive meanwhile;
* beyond :data:`HARD_LIMIT` (a listing, which a paused watch does not stop, can
  reach it), the caller awaits :meth:`Spool.room` until the thread has written
  enough: memory stays bounded, and the loop goes on turning meanwhile (signals,
  the liveness probe, peering's keep-alive and the state file's saves do not wait
  for the reader; a write that waited on the loop itself froze them all).

Nothing is ever dropped silently. Lines are dropped only once the reader is gone or
stdout fails, or when the process stops before they could be written (:meth:`Spool.close`
counts them for a warning).

Each line may carry a ``commit``: called once the line was written (taken by the
pipe or the file), in stream order, never for a line that was not. That is how
the state file learns what was printed, as opposed to what was meant to be.

To a pipe with room, the loop writes lines itself, when nothing waits before them: the
lines built while it works are gathered, and written with one write when it turns
(``schedule``, the loop's ``call_soon``: when the watch loop waits for the network, or
between two slices of a listing page), through a non-blocking file descriptor of its own
for the same pipe (:meth:`LineWriter.emit_now`), so the write never waits, and the lines
it took are committed at once. Handing every line to the thread cost a sixth of the
throughput (the GIL passed back and forth for each, on a 2-core machine: ``make bench``);
one write per line instead tripled the reader's CPU (it woke for each). A pipe that takes
only part of a line gets the rest from the thread, before anything else (and never
dropped: it is the line in flight), and the lines after it through the thread; a pipe
that is full, a file or a terminal get everything through the thread, as before.

The thread writes all the lines waiting when it looks (up to :data:`BATCH` bytes,
and to a pipe no more than it has free: :meth:`LineWriter.room`) with one ``write``,
each line whole: when the loop is busy, the thread gets the GIL back only every
``sys.getswitchinterval()`` (5 ms) after each write, so with one line a write, stdout
fell behind a busy loop and paused the watches. Nothing
waits to fill a batch: a line alone in the queue is written at once.

When the reader goes away (``deploywatch | head -1``), the next write fails with
``BrokenPipeError``. That is the reader's way of saying "enough", not an error:
the writer points fd 1 at /dev/null (so nothing, not even the interpreter's
final flush, can fail again and print a traceback) and asks the operator to stop
the normal way, with SIGTERM to itself, which Kopf turns into a graceful exit 0.
Any other failure to write (a full disk: ``ENOSPC``) is the caller's ``on_failure``.
"""
import asyncio
import collections
import fcntl
import io
import itertools
import json
import os
import signal
import stat
import struct
import sys
import termios
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO

import orjson

from deploywatch.base import encoding

HIGH_WATER = 4 * 1024 * 1024  # bytes of unwritten lines before the watches pause
HARD_LIMIT = 4 * HIGH_WATER  # bytes of unwritten lines before the caller awaits room
BATCH = 1024 * 1024  # bytes of waiting lines the writer thread takes (and writes) at once, at most

Commit = Callable[[], None]
Entry = tuple[bytes, Commit | None, int, str, bool]  # a line, its commit, bytes held, event type, inferred
Written = Callable[[str, bool], None]  # a line of this event type (and inferred or not) was written


LINE_OPTIONS = orjson.OPT_APPEND_NEWLINE | encoding.SPLICE


def encode(event: Mapping[str, Any]) -> bytes:
    """
    One line of UTF-8 JSON, by orjson (the line is built for every event: speed matters).

    ``object`` and ``old`` are spliced in as the JSON the tracker already has for them
    (``encoding.Kept``) rather than encoded a second time. Non-ASCII text stays readable
    (labels with accents or emoji). What orjson refuses goes through the standard
    library: integers beyond 64 bits, and lone surrogates, which JSON from the API may
    carry as escapes but UTF-8 cannot: ``backslashreplace`` writes them back as the
    same ``\\udXXX`` JSON escape.
    """
    try:
        return orjson.dumps(event, option=LINE_OPTIONS, default=encoding.splice)
    except TypeError:  # orjson.JSONEncodeError is one
        text = json.dumps(event, ensure_ascii=False, separators=(',', ':'))
        return text.encode('utf-8', errors='backslashreplace') + b'\n'


def _stop_quietly() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # the process, whichever thread finds the reader gone


def stdout() -> BinaryIO:
    """
    fd 1 without Python's buffer: the writer thread may be blocked in a write when the
    process exits, and a buffered stream's lock held by it would abort the interpreter's
    final flush. Lines are written whole by :meth:`LineWriter.emit` anyway.
    """
    return os.fdopen(sys.stdout.fileno(), 'wb', buffering=0, closefd=False)


Encoder = Callable[[Mapping[str, Any]], bytes]
Select = Callable[[dict[str, Any]], dict[str, Any] | None]  # see shaping.Shaper


def _everything(event: dict[str, Any]) -> dict[str, Any] | None:
    return event


class LineWriter:
    """
    Writes events: ``select`` decides what of each is written (``shaping.Shaper``),
    ``encode`` how (JSON here, or ``text.TextEncoder``). :meth:`line` builds the
    bytes, :meth:`emit` writes them; :meth:`write` does both, synchronously.
    """

    def __init__(
            self,
            stream: BinaryIO | None = None,
            *,
            encode: Encoder = encode,
            select: Select = _everything,
            on_reader_gone: Callable[[], None] = _stop_quietly,
    ) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._encode = encode
        self._select = select
        self._on_reader_gone = on_reader_gone
        self.reader_gone = False
        self.blocked = 0.0  # seconds spent in write and flush: how long the reader kept us waiting
        self._pipe = _pipe_size(self._stream)
        self._at_once = _nonblocking_twin(self._stream) if self._pipe is not None else None
        if self._at_once is not None:
            weakref.finalize(self, os.close, self._at_once)

    @property
    def at_once(self) -> bool:
        """Whether :meth:`emit_now` can write at all (a pipe, its reader there)."""
        return self._at_once is not None and not self.reader_gone

    def emit_now(self, data: bytes) -> int:
        """
        Write what of ``data`` a pipe takes without waiting; how many bytes it took.

        0 when it would wait, when the stream is no pipe (a file, a terminal: only the
        thread writes there), and on any error: the thread's write meets it again and
        deals with it (:meth:`emit_many`). Possibly part of the line: the caller writes
        the rest next, before anything else.
        """
        if self._at_once is None or self.reader_gone:
            return 0
        began = time.perf_counter()
        try:
            return os.write(self._at_once, data)
        except OSError:
            return 0
        finally:
            self.blocked += time.perf_counter() - began

    def room(self) -> int:
        """
        How many bytes of lines one write may carry now: what a pipe has free (at least one
        line is always written), else :data:`BATCH`. A pipe's reader that is behind thus
        gets one line per write, as before batching, and a write that blocks holds one
        line, not a batch: when this replica stops printing (peering), at most what the
        pipe holds and that line still reach the reader late.
        """
        if self._pipe is None:
            return BATCH
        try:
            asked = fcntl.ioctl(self._stream.fileno(), termios.FIONREAD, b'\0' * 4)
            unread: int = struct.unpack('i', asked)[0]
        except (OSError, ValueError):
            return BATCH
        return max(0, min(BATCH, self._pipe - unread))

    def write(self, event: dict[str, Any]) -> None:
        data = self.line(event)
        if data is not None:
            self.emit(data)

    def line(self, event: dict[str, Any]) -> bytes | None:
        """The bytes to write for an event, or None if nothing of it is written."""
        selected = self._select(event)
        return None if selected is None else self._encode(selected)

    def emit(self, data: bytes) -> bool:
        """
        Write one line whole and flush it; False if the reader is gone (now or before).
        Other errors (``OSError``: a full disk) are raised: the line was not written.
        """
        try:
            return self.emit_many((data,)) == 1
        except Unwritten as failure:
            raise failure.error from None

    def emit_many(self, lines: Sequence[bytes]) -> int:
        """
        Write lines, each whole, in order, with as few writes as the stream allows, and
        flush; how many were written whole (fewer than all: the reader is gone). Other
        errors raise :class:`Unwritten`, which says how many were written before.
        """
        if self.reader_gone:
            return 0
        data = lines[0] if len(lines) == 1 else b''.join(lines)
        done = 0  # bytes the file took; a buffered stream's write only says what its buffer took
        exact = isinstance(self._stream, io.RawIOBase)
        began = time.perf_counter()
        try:
            view = memoryview(data)
            while view:  # an unbuffered stream may take the bytes in parts
                taken = self._stream.write(view) or 0
                done += taken
                view = view[taken:]
            self._stream.flush()
        except BrokenPipeError:
            self.reader_gone = True
            self._silence()
            self._on_reader_gone()
            return _whole(lines, done if exact else 0)
        except OSError as error:
            raise Unwritten(error, _whole(lines, done if exact else 0)) from error
        finally:
            self.blocked += time.perf_counter() - began
        return len(lines)

    def _silence(self) -> None:
        try:
            fileno = self._stream.fileno()
        except (OSError, ValueError):  # not a real file (tests pass BytesIO)
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fileno)
        os.close(devnull)


class Unwritten(Exception):
    """Writing failed (``error``) after ``written`` lines were written whole."""

    def __init__(self, error: OSError, written: int) -> None:
        super().__init__(error, written)
        self.error, self.written = error, written


def _pipe_size(stream: BinaryIO) -> int | None:
    """The capacity of the pipe ``stream`` writes to (Linux's F_GETPIPE_SZ); None if not a pipe."""
    try:
        fileno = stream.fileno()
        if not stat.S_ISFIFO(os.fstat(fileno).st_mode):
            return None
        return int(fcntl.fcntl(fileno, getattr(fcntl, 'F_GETPIPE_SZ', 1032)))
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


def _nonblocking_twin(stream: BinaryIO) -> int | None:
    """
    A second, non-blocking file descriptor for the pipe ``stream`` writes to; None if none.

    Opened anew through ``/proc/self/fd`` (Linux): ``O_NONBLOCK`` belongs to an open file,
    so setting it on fd 1 itself would change the pipe for whoever shares that open file
    (the shell that started us); this one is ours alone.
    """
    try:
        return os.open(f'/proc/self/fd/{stream.fileno()}', os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


def _whole(lines: Sequence[bytes], done: int) -> int:
    """How many of ``lines`` the first ``done`` bytes of their concatenation hold whole."""
    return sum(1 for end in itertools.accumulate(map(len, lines)) if end <= done)


def _nothing(*_: Any) -> None:
    pass


class Spool:
    """
    Lines between the event loop and stdout, in bounded memory, written by one thread.

    :meth:`write` is called on the loop (it selects and encodes there, in order);
    ``on_pressure`` and ``on_failure`` are called from either thread: the caller
    hands them over to its loop itself.
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
        entry = (data, commit, len(data) + held, event.get('type', ''), bool(event.get('inferred')))
        pressure = now = False
        with self._changed:
            if self.stopped or self._closed:
                self.dropped += bool(data)
                return
            if self._ready or (self._writer.at_once and not (self._queue or self._busy or self._rest)):
                self._ready.append(entry)  # for the loop to write itself, once it turns (flush)
                self._pending += entry[2]
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
            self._pending -= sum(size for _, _, size, _, _ in ready)
            lines = [data for data, *_ in ready]
            data = lines[0] if len(lines) == 1 else b''.join(lines)
            taken = self._writer.emit_now(data) if data else 0
            whole = _whole(lines, taken)
            if whole < len(ready):
                begun = taken - sum(map(len, lines[:whole]))
                later = ready[whole:]
                if begun > 0:
                    line, commit, size, kind, inferred = later.pop(0)
                    self._rest = (line[begun:], commit, size - begun, kind, inferred)
                    self._pending += self._rest[2]
                    self._changed.notify_all()
                pressure = any([self._queue_up(entry) for entry in later])
            else:
                pressure = False
            self._changed.notify_all()  # room() may be waiting for what the loop just wrote
        for line, commit, _, kind, inferred in ready[:whole]:  # outside the lock, in order: nothing waits
            self._written(kind, inferred, commit, printed=bool(line))
        if pressure:
            self._on_pressure(True)

    def _queue_up(self, entry: Entry) -> bool:
        """Queue a line for the thread (under the lock); whether the pause is called for now."""
        self._queue.append(entry)
        self._pending += entry[2]
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
            left = sum(1 for data, *_ in self._queue if data) + self._writing + (self._rest is not None)
            self._queue.clear()
            self._pending = 0
            self._changed.notify_all()
        return left

    def _drop(self) -> int:
        dropped = sum(1 for data, *_ in (*self._ready, *self._queue) if data)
        self._ready.clear()
        self._queue.clear()
        self._pending = self._rest[2] if self._rest is not None else 0  # the line in flight is kept
        self.dropped += dropped
        return dropped

    def _release(self) -> bool:
        """Whether the pressure is off now (and was on): the caller calls on_pressure(False)."""
        if self._over and self._pending <= self._high // 2:
            self._over = False
            return True
        return False

    def _written(self, kind: str, inferred: bool, commit: Commit | None, *, printed: bool) -> None:
        if printed:
            self._on_written(kind, inferred)
        if commit is not None:
            commit()

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
        size = len(taken[0][0])
        while self._queue and size + len(self._queue[0][0]) <= limit:
            size += len(self._queue[0][0])
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
                self._pending -= sum(size for _, _, size, _, _ in batch)
                self._writing = sum(1 for data, *_ in batch if data)
                released = self._release()
                self._changed.notify_all()
            if released:
                self._on_pressure(False)
            failure: OSError | None = None
            try:
                written = self._writer.emit_many([data for data, *_ in batch])
            except Unwritten as unwritten:
                failure, written = unwritten.error, unwritten.written
            with self._changed:
                self._writing = 0
            for data, commit, _, kind, inferred in batch[:written]:
                self._written(kind, inferred, commit, printed=bool(data))
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
