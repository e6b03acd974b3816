"""
How deploywatch ends: its exit statuses, and the one way to stop with one of them.

Lower layers never exit: they raise (``Misconfigured``, ``MissingPermission``) or call
what they were given, and the composition root (``deploywatch.runtime.app``) turns that
into :meth:`Lifecycle.stop`. A running operator stops the normal way, by SIGTERM to
itself: Kopf stops its tasks and runs the clean-up, which writes the lines still
waiting and saves the state file; ``kopf run`` then exits with 0, so a stop with
another status ends the process with it once the clean-up is done (``atexit``).
Before anything has connected there is nothing to clean up: a bad setting is one
line and an immediate exit.
"""
import atexit
import enum
import logging
import os
import signal
import sys

logger = logging.getLogger('deploywatch')


class Status(enum.IntEnum):
    """The exit statuses (README, "Exit status")."""
    STOPPED = 0  # a signal, or the reader of stdout gone
    FAILED = 1  # a background task died, stdout refused a line, the final save failed
    MISCONFIGURED = 2  # a setting, the credentials, the state file or the metrics port: before connecting
    FORBIDDEN = 3  # a permission missing on the API server, for longer than a restart explains


class Lifecycle:
    """This process's run: whether it is stopping, with which status, and why (for the liveness probe)."""

    def __init__(self) -> None:
        self.status = Status.STOPPED
        self.why: str | None = None  # what failed, while the process stops on it
        self.stopping = False
        atexit.register(self._exit)

    def stop(self, status: Status = Status.STOPPED, *, why: str | None = None) -> None:
        """
        Stop with ``status``. ``why`` is said once: an ERROR for a failure, the one line on
        stderr for a refusal (a setting, a permission). The first status other than 0 is kept.
        """
        if status is Status.MISCONFIGURED:
            _refuse(why or 'misconfigured')
        if status is Status.FAILED:
            logger.error(why)
        elif status is Status.FORBIDDEN:
            print(f"deploywatch: {why}", file=sys.stderr, flush=True)
        if status and not self.status:
            self.status, self.why = status, why
        if not self.stopping:
            self.stopping = True
            os.kill(os.getpid(), signal.SIGTERM)  # Kopf's graceful stop: the clean-up runs

    def _exit(self) -> None:
        """``kopf run`` ends with 0 after a stop; a stop after a failure must not look like success."""
        if self.status:
            logging.shutdown()
            os._exit(self.status)


def _refuse(line: str) -> None:
    """One line and exit 2: nothing has connected, nothing is written, nothing to save."""
    print(f"deploywatch: {line}", file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(Status.MISCONFIGURED)
