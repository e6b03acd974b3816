"""
A wall clock the test steps, in the operator process alone, as NTP or a restored VM steps a node's.

The operator gets a ``sitecustomize.py`` first on its ``PYTHONPATH`` (Python imports it at
start-up, before anything else): it wraps ``time.time`` and ``time.time_ns`` with an offset
read from a file at each call. The monotonic clock, which the event loop sleeps on, is left
alone, and so is everything outside the process (the test, the API server). deploywatch's
code is not touched. The first call that reads a new offset writes it to a second file, so
that the test knows the step has reached the process, not only the disk.
"""
import os
import pathlib

from tests.harness.operator import eventually

OFFSET_VARIABLE = 'WALLCLOCK_OFFSET_FILE'  # as SITECUSTOMIZE reads it

SITECUSTOMIZE = '''\
"""The wall clock of this process, moved by the test (tests/harness/wallclock.py)."""
import os
import threading
import time

_FILE = os.environ['WALLCLOCK_OFFSET_FILE']
_time, _time_ns = time.time, time.time_ns
_seen = [0.0]


def _offset():
    try:
        with open(_FILE) as offset_file:
            offset = float(offset_file.read())
    except (OSError, ValueError):
        return 0.0
    if offset != _seen[0]:
        _seen[0] = offset
        temporary = f'{_FILE}.seen.{os.getpid()}.{threading.get_ident()}'
        with open(temporary, 'w') as seen_file:
            seen_file.write(repr(offset))
        os.replace(temporary, _FILE + '.seen')
    return offset


def _stepped_time():
    return _time() + _offset()


def _stepped_time_ns():
    return _time_ns() + int(_offset() * 1e9)


time.time = _stepped_time
time.time_ns = _stepped_time_ns
'''


class WallClock:
    """The operator's wall clock: :meth:`env` to start it with, :meth:`step` to move it."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / 'sitecustomize.py').write_text(SITECUSTOMIZE)
        self.offset_file = folder / 'offset'
        self.offset = 0.0

    def env(self) -> dict[str, str]:
        path = [str(self.folder), *filter(None, [os.environ.get('PYTHONPATH')])]
        return {'PYTHONPATH': os.pathsep.join(path), OFFSET_VARIABLE: str(self.offset_file)}

    def step(self, seconds: float) -> None:
        """Move the clock by ``seconds`` (negative: back); returns once the process has read it."""
        self.offset += seconds
        temporary = self.folder / 'offset.new'
        temporary.write_text(repr(self.offset))
        os.replace(temporary, self.offset_file)
        seen = self.folder / 'offset.seen'
        eventually(lambda: seen.exists() and seen.read_text() == repr(self.offset),
                   what=f'the operator reading its wall clock {self.offset:+g} s off')
