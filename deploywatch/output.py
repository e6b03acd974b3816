"""
The one writer of stdout: one JSON object per line, flushed per line.

stdout belongs to the event stream alone (Kopf's and our logs go to stderr), so
everything that writes there goes through :class:`LineWriter`. Each line is
written and flushed whole, so a reader (``jq``, Fluent Bit, a pipe into a file)
never sees half a line and sees every line as soon as it is built.

When the reader goes away (``deploywatch | head -1``), the next write fails with
``BrokenPipeError``. That is the reader's way of saying "enough", not an error:
the writer points fd 1 at /dev/null (so nothing, not even the interpreter's
final flush, can fail again and print a traceback) and asks the operator to stop
the normal way, with SIGTERM to itself, which Kopf turns into a graceful exit 0.
"""
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import orjson


def encode(event: Mapping[str, Any]) -> bytes:
    """
    One line of UTF-8 JSON, by orjson (the line is built for every event: speed matters).

    Non-ASCII text stays readable (labels with accents or emoji). What orjson
    refuses goes through the standard library: integers beyond 64 bits, and lone
    surrogates, which JSON from the API may carry as escapes but UTF-8 cannot:
    ``backslashreplace`` writes them back as the same ``\\udXXX`` JSON escape.
    """
    try:
        return orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # orjson.JSONEncodeError is one
        text = json.dumps(event, ensure_ascii=False, separators=(',', ':'))
        return text.encode('utf-8', errors='backslashreplace') + b'\n'


def _stop_quietly() -> None:
    signal.raise_signal(signal.SIGTERM)


Encoder = Callable[[Mapping[str, Any]], bytes]
Select = Callable[[dict[str, Any]], dict[str, Any] | None]  # see shaping.Shaper


def _everything(event: dict[str, Any]) -> dict[str, Any] | None:
    return event


class LineWriter:
    """
    Writes events: ``select`` decides what of each is written (``shaping.Shaper``),
    ``encode`` how (JSON here, or ``text.TextEncoder``).
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

    def write(self, event: dict[str, Any]) -> None:
        if self.reader_gone:
            return
        selected = self._select(event)
        if selected is None:
            return
        try:
            self._stream.write(self._encode(selected))
            self._stream.flush()
        except BrokenPipeError:
            self.reader_gone = True
            self._silence()
            self._on_reader_gone()

    def _silence(self) -> None:
        try:
            fileno = self._stream.fileno()
        except (OSError, ValueError):  # not a real file (tests pass BytesIO)
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fileno)
        os.close(devnull)
