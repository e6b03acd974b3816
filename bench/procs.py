"""
The driver's view of a process: CPU and memory from /proc, and its stdout as timed lines.

Every client the benchmark runs prints one event per line on stdout, with one
exception: kubectl 1.37 (``-o json --output-watch-events``) prints each *page*
of its initial listing as one line, an ADDED event whose object is a ``List``
of up to 500 items. So what is counted is a marker per client: a newline, or
for kubectl ``"kind":"Deployment"`` (it sets kind on every item and event
object; the escaped copy inside the last-applied annotation does not match).
:class:`Lines` reads the pipe in a thread of its own with large ``os.read``
calls, so the driver keeps up with any client:

* it always counts markers (``bytes.count``, no parsing), and notes the
  ``time.monotonic()`` of the read that brought the count to an expected
  number: that is when the N-th event reached the reader;
* while *tracking*, it also splits the lines and keeps, per line, the first
  ``"resourceVersion"`` it holds (deploywatch prints its top-level field
  first; in a raw watch event the first is the object's
  ``metadata.resourceVersion``), the start of the line, and the time of the
  read that completed it. ``time.monotonic`` is CLOCK_MONOTONIC, shared by all
  processes of the machine, so these times compare with the load server's.
"""
import contextlib
import os
import pathlib
import re
import signal
import subprocess
import threading
import time

CLOCK_TICKS = os.sysconf('SC_CLK_TCK')
FIELD = b'"resourceVersion"'
VALUE = re.compile(rb'"resourceVersion": ?"(\d+)"')


def first_version(line: bytes) -> int | None:
    """
    The first ``"resourceVersion": "<digits>"`` in a line, or None.

    ``bytes.find`` (a C substring search) finds each candidate and the pattern is
    only matched there: a regular expression *search* over 6-12 KB lines costs the
    driver a good part of a core at 10,000 lines a second, this almost nothing.
    """
    at = line.find(FIELD)
    while at >= 0:
        if match := VALUE.match(line, at):
            return int(match[1])
        at = line.find(FIELD, at + len(FIELD))
    return None


def terminate(process: subprocess.Popen[bytes], *, grace: float) -> None:
    """SIGCONT (a client the bench stopped) and SIGTERM; SIGKILL after ``grace`` seconds; reaped."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (/proc/PID/stat fields 14 and 15)."""
    fields = pathlib.Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_bytes(pid: int, field: str = 'VmHWM') -> int:
    """A /proc/PID/status memory figure: VmHWM is the peak resident set, VmRSS the current one."""
    for line in pathlib.Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(f'{field}:'):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f'no {field} for process {pid}')


class Lines:
    """A client's stdout, read in a thread: a count of events, and timed lines while tracking."""

    def __init__(self, fd: int, marker: bytes = b'\n', *, track: bool = False, keep: bool = False) -> None:
        self._fd = fd
        self._keep = keep
        self.kept: list[bytes] = []  # with ``keep``, every read as it came: checked after a run, not in it
        self._marker = marker
        self._changed = threading.Condition()
        self.count = 0
        self._expected = 0
        self.reached_at: float | None = None
        self._tracking = track
        self._partial = b''
        self.tracked: list[tuple[int | None, bytes, float]] = []  # (resourceVersion, line start, read at)
        self.closed = False
        self._thread = threading.Thread(target=self._read, name='client-stdout', daemon=True)
        self._thread.start()

    def _read(self) -> None:
        carry = b''  # the end of the previous read, in case a marker spans two reads
        while chunk := os.read(self._fd, 1 << 20):
            now = time.monotonic()
            if self._keep:
                self.kept.append(chunk)
            lines = (carry + chunk).count(self._marker)
            carry = chunk[1 - len(self._marker):] if len(self._marker) > 1 else b''
            with self._changed:
                if self._tracking:
                    *complete, self._partial = (self._partial + chunk).split(b'\n')
                    self.tracked.extend((first_version(line), line[:60], now) for line in complete)
                self.count += lines
                if self.reached_at is None and self.count >= self._expected:
                    self.reached_at = now
                    self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def expect(self, count: int, *, track: bool | None = None) -> None:
        """
        Note the time when ``count`` lines have been read; start or stop tracking (at a line end).

        Starting to track forgets the lines tracked before.
        """
        with self._changed:
            self._expected = count
            self.reached_at = time.monotonic() if self.count >= count else None
            if track is not None:
                if track and not self._tracking:
                    self.tracked = []
                self._tracking, self._partial = track, b''

    def wait(self, timeout: float) -> float | None:
        """When the expected count was reached, or None if it was not within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.reached_at is None and not self.closed and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            return self.reached_at
