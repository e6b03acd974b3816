"""
The operator under test, as users run it: ``kopf run operator/handlers.py ...``.

Every line it prints on stdout is parsed and validated against the shipped JSON
schema as it arrives; a line that is not a valid event fails the test at the
next wait. Waits are bounded (behaviour, not speed: the bound only turns a hang
into a failure with the events seen so far in the message).
"""
import fcntl
import json
import os
import pathlib
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

import jsonschema

from tests.harness.schema import VALIDATOR

REPO = pathlib.Path(__file__).resolve().parents[2]
HANDLERS = REPO / 'operator' / 'handlers.py'
KOPF = pathlib.Path(sys.executable).parent / 'kopf'
WAIT = 30.0  # seconds before a wait for an expected event counts as a failure

Event = dict[str, Any]
Predicate = Callable[[Event], bool]


def operator_env(kubeconfig: pathlib.Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    The environment of the operator: ours minus any DEPLOYWATCH_* or KUBECONFIG of the caller's,
    and minus the runner's terminal size (pytest-xdist's workers get COLUMNS=80 and LINES=24).
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('DEPLOYWATCH_', 'KOPF_')) and k not in ('COLUMNS', 'LINES')}
    env['KUBECONFIG'] = str(kubeconfig)
    env.update(extra or {})
    return env


class OperatorProcess:
    """
    The operator with its stdout read line by line: as JSON events (validated), or with
    ``text=True`` as plain lines in ``lines`` (the text format), optionally through a
    pseudo-terminal (``tty=True``) to see what a person at a terminal sees.
    """

    def __init__(self, *, kubeconfig: pathlib.Path | None = None, args: list[str] = (),  # type: ignore[assignment]
                 stderr_path: pathlib.Path, env: Mapping[str, str] | None = None, text: bool = False,
                 tty: bool = False, command: list[str] | None = None,
                 environment: Mapping[str, str] | None = None, cwd: pathlib.Path = REPO) -> None:
        """
        ``kopf run operator/handlers.py ARGS`` with ``KUBECONFIG`` and ``env`` added to ours;
        or, for a container's entrypoint, ``command`` with exactly ``environment``.
        """
        self.stderr_path = stderr_path
        self.events: list[Event] = []
        self.lines: list[str] = []
        self._text = text
        self._problems: list[str] = []
        self._changed = threading.Condition()
        self._reading = threading.Condition()
        self._paused = False
        self._allowance = 0  # lines a paused reader still takes (let_through)
        self._pace = 0.0  # seconds the reader spends on each line (read_slowly)
        if command is None:
            assert kubeconfig is not None, 'kopf run needs a kubeconfig'
            command = [str(KOPF), 'run', str(HANDLERS), *args]
            environment = operator_env(kubeconfig, env)
        if tty:
            reader, writer = pty.openpty()
            stdout: int = writer
        else:
            stdout = subprocess.PIPE
        with stderr_path.open('wb') as stderr:
            self.process = subprocess.Popen(command, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                            env=dict(environment or {}), cwd=cwd)
        if tty:
            os.close(writer)
            self._stdout: IO[bytes] = os.fdopen(reader, 'rb')
        else:
            assert self.process.stdout is not None
            self._stdout = self.process.stdout
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _lines(self) -> Iterator[bytes]:
        try:
            yield from self._stdout
        except OSError:  # a pseudo-terminal's end: EIO once the process has closed it
            return

    def _read(self) -> None:
        for raw in self._lines():
            with self._reading:
                self._reading.wait_for(lambda: not self._paused or self._allowance > 0)
                if self._paused:
                    self._allowance -= 1
                pace = self._pace
            if pace:
                time.sleep(pace)  # a consumer slower than deploywatch, not a wait for anything
            if self._text:
                with self._changed:
                    self.lines.append(raw.decode().rstrip('\r\n'))
                    self._changed.notify_all()
                continue
            try:
                event = json.loads(raw)
                VALIDATOR.validate(event)
            except (ValueError, jsonschema.ValidationError) as error:
                with self._changed:
                    self._problems.append(f'invalid line {raw[:300]!r}: {error}')
                continue
            with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def resize(self, columns: int, rows: int = 24) -> None:
        """The pseudo-terminal's window size (``tty=True``), as a person resizing the window sets it."""
        fcntl.ioctl(self._stdout.fileno(), termios.TIOCSWINSZ, struct.pack('HHHH', rows, columns, 0, 0))

    def pause_reading(self) -> None:
        """Stop reading stdout (after the line in hand): a slow or stuck consumer."""
        with self._reading:
            self._paused, self._allowance = True, 0

    def let_through(self, count: int = 1) -> None:
        """
        A paused reader takes ``count`` more lines, then holds the next one as before: the
        writer can finish the line the pipe held, and what fits after it, and no more.
        """
        with self._reading:
            self._allowance += count
            self._reading.notify_all()

    def read_slowly(self, pace: float) -> None:
        """Take ``pace`` seconds over each line from now on: a consumer that reads, slowly."""
        with self._reading:
            self._pace = pace

    def resume_reading(self) -> None:
        with self._reading:
            self._paused, self._pace = False, 0.0
            self._reading.notify_all()

    def rss_bytes(self) -> int:
        """The operator's resident memory, from /proc."""
        for line in pathlib.Path(f'/proc/{self.process.pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
        raise RuntimeError('no VmRSS')

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors='replace')

    def check(self) -> None:
        assert not self._problems, self._problems

    def wait_for_line(self, text: str, *, timeout: float = WAIT) -> str:
        """The first text-format line containing ``text``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f'no line with {text!r}; lines: {self.lines}\n{self.stderr[-2000:]}')
                self._changed.wait(remaining)

    def wait_for(self, predicate: Predicate, *, what: str, timeout: float = WAIT, after: int = 0) -> Event:
        """The first event (from index ``after`` on) that matches; fail after the bound."""
        return self.wait_for_count(predicate, 1, what=what, timeout=timeout, after=after)[0]

    def wait_for_count(self, predicate: Predicate, count: int, *, what: str,
                       timeout: float = WAIT, after: int = 0) -> list[Event]:
        """At least ``count`` matching events; fail after the bound or if the process ends."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                self.check()
                found = [event for event in self.events[after:] if predicate(event)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    seen = [(e['type'], e['namespace'], e['name'], e['resourceVersion']) for e in self.events]
                    raise AssertionError(f'{len(found)} of {count} events: {what}; seen: {seen}\n'
                                         f'stderr:\n{self.stderr[-3000:]}')
                self._changed.wait(remaining)

    def matching(self, predicate: Predicate) -> list[Event]:
        with self._changed:
            self.check()
            return [event for event in self.events if predicate(event)]

    @property
    def at_eof(self) -> bool:
        """Every line of stdout is in: the process closed it and the reader has taken all."""
        return self.process.poll() is not None and not self._reader.is_alive()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        return code


def eventually(condition: Callable[[], bool], *, what: str, timeout: float = WAIT) -> None:
    """Poll a condition outside the stream (a file, the server) until it holds, within the bound."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f'never happened: {what}')
        time.sleep(0.05)


def of(name: str, type_: str | None = None, **fields: Any) -> Predicate:
    """A predicate: the event is about ``name`` (and of ``type_``, with these top-level fields)."""
    def predicate(event: Event) -> bool:
        return (event['name'] == name and (type_ is None or event['type'] == type_)
                and all(event.get(k) == v for k, v in fields.items()))
    return predicate
