"""
The one writer of stdout: each line written whole and flushed; a reader gone is not an error.

stdout belongs to the event stream alone (Kopf's and our logs go to stderr), so everything
that writes there goes through :class:`LineWriter`: a reader (``jq``, Fluent Bit, a pipe
into a file) never sees half a line, and sees each line as soon as it is written.

When the reader goes away (``deploywatch | head -1``), the next write fails with
``BrokenPipeError``: the reader's way of saying "enough". The writer points fd 1 at
/dev/null, so nothing (not even the interpreter's final flush) fails again with a
traceback, and calls ``on_reader_gone``: by default SIGTERM to itself, which Kopf turns
into a graceful exit 0. Any other failure to write (``ENOSPC``) is raised to the caller.

Waiting for a slow reader is not this module's concern: :mod:`deploywatch.output.spool`
keeps it off the event loop.
"""
import fcntl
import io
import itertools
import os
import signal
import stat
import struct
import sys
import termios
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from deploywatch.output.jsonl import Encoder, encode

BATCH = 1024 * 1024  # bytes of lines one write carries at most

Select = Callable[[dict[str, Any]], dict[str, Any] | None]  # what of an event is written: see shaping.Shaper


def _stop_quietly() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # the process, whichever thread finds the reader gone


def stdout() -> BinaryIO:
    """
    fd 1 without Python's buffer: the writer thread may be blocked in a write when the
    process exits, and a buffered stream's lock held by it would abort the interpreter's
    final flush. Lines are written whole by :meth:`LineWriter.emit` anyway.
    """
    return os.fdopen(sys.stdout.fileno(), 'wb', buffering=0, closefd=False)


def _everything(event: dict[str, Any]) -> dict[str, Any] | None:
    return event


class LineWriter:
    """
    Writes events: ``select`` decides what of each is written (``shaping.Shaper``),
    ``encode`` how (``jsonl.encode``, ``text.TextEncoder``). :meth:`line` builds the
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

        Through a non-blocking descriptor of its own, so that the event loop may write to a
        pipe with room and never wait. 0 when it would wait, when the stream is no pipe
        (a file, a terminal), and on any error: the next :meth:`emit_many` meets it again
        and deals with it. Possibly part of the line: the caller writes the rest next.
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
        line is always written), else :data:`BATCH`. A write that blocks on a reader that
        is behind thus holds one line, not a batch: when this replica stops printing
        (peering), at most what the pipe holds and that line still reach the reader late.
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
            return whole_lines(lines, done if exact else 0)
        except OSError as error:
            raise Unwritten(error, whole_lines(lines, done if exact else 0)) from error
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


def whole_lines(lines: Sequence[bytes], done: int) -> int:
    """How many of ``lines`` the first ``done`` bytes of their concatenation hold whole."""
    return sum(1 for end in itertools.accumulate(map(len, lines)) if end <= done)
