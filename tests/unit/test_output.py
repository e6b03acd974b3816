"""output: one whole, flushed line per event; a gone reader is not an error; the spool bounds memory."""
import asyncio
import functools
import io
import json
import os
import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

import pytest

from deploywatch.output.jsonl import encode
from deploywatch.output.spool import Spool
from deploywatch.output.writer import LineWriter

EVENT = {'type': 'ADDED', 'name': 'web', 'object': {'metadata': {'labels': {'a': 'b'}}, 'n': [1, 2.5, None]}}


class CountingStream(io.BytesIO):
    """A BytesIO that records what had been written each time it was flushed."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[bytes] = []

    def flush(self) -> None:
        super().flush()
        self.flushed.append(self.getvalue())


class BrokenStream(io.BytesIO):
    """Not a real file (no fileno), and its reader is always gone."""

    def write(self, data: Any, /) -> int:
        raise BrokenPipeError(32, 'Broken pipe')


@pytest.fixture
def broken_pipe() -> Iterator[BinaryIO]:
    """The write end of a pipe whose reader is gone, buffered as sys.stdout.buffer is."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, 'wb') as stream:  # closes write_end, whatever it points to by then
        yield stream


def test_encode_is_one_compact_line() -> None:
    line = encode(EVENT)
    assert line.endswith(b'\n')
    assert line.count(b'\n') == 1
    assert b': ' not in line and b', ' not in line
    assert line == (b'{"type":"ADDED","name":"web",'
                    b'"object":{"metadata":{"labels":{"a":"b"}},"n":[1,2.5,null]}}\n')
    assert json.loads(line) == EVENT


def test_encode_keeps_the_field_order() -> None:
    assert list(json.loads(encode({'z': 1, 'a': 2, 'm': 3}))) == ['z', 'a', 'm']


def test_encode_escapes_newlines_inside_strings() -> None:
    line = encode({'text': 'one\ntwo\r\u2028three'})
    assert line.count(b'\n') == 1
    assert json.loads(line) == {'text': 'one\ntwo\r\u2028three'}


def test_encode_keeps_non_ascii_as_utf8() -> None:
    labels = {'équipe': 'café', 'emoji': '🚀', '名前': '値'}
    line = encode({'labels': labels})
    assert 'café'.encode() in line
    assert '🚀'.encode() in line
    assert '名前'.encode() in line
    assert b'\\u' not in line
    assert json.loads(line.decode('utf-8')) == {'labels': labels}


@pytest.mark.parametrize('escape', ['\\ud800', '\\udfff', '\\udc80', 'a\\ud83db'])
def test_encode_of_a_lone_surrogate_is_still_valid_json(escape: str) -> None:
    text = json.loads(f'"{escape}"')  # what the API's JSON can carry
    event = {'label': text, text: 'as a key'}
    line = encode(event)
    assert line.endswith(b'\n')
    decoded = line.decode('utf-8')  # strict: the line is valid UTF-8
    assert json.loads(decoded) == event


def test_encode_of_a_backslash_before_a_surrogate_round_trips() -> None:
    text = '\\' + json.loads('"\\ud800"')
    assert json.loads(encode({'v': text})) == {'v': text}


def test_writer_writes_and_flushes_each_line_whole() -> None:
    stream = CountingStream()
    writer = LineWriter(stream, on_reader_gone=lambda: pytest.fail('the reader is still there'))
    writer.write({'n': 1})
    writer.write({'n': 2})
    assert stream.flushed == [b'{"n":1}\n', b'{"n":1}\n{"n":2}\n']
    assert writer.reader_gone is False


def test_writer_on_a_pipe_makes_every_line_readable_at_once() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    with os.fdopen(read_end, 'rb', buffering=0) as reader, os.fdopen(write_end, 'wb') as stream:
        writer = LineWriter(stream, on_reader_gone=lambda: pytest.fail('the reader is still there'))
        for number in range(3):
            writer.write({'n': number, 'text': 'é' * 10})
            assert json.loads(reader.read(65536)) == {'n': number, 'text': 'é' * 10}


def test_writer_on_a_broken_pipe_calls_back_once_and_goes_quiet(broken_pipe: BinaryIO) -> None:
    calls: list[str] = []
    writer = LineWriter(broken_pipe, on_reader_gone=lambda: calls.append('gone'))
    writer.write(EVENT)
    assert calls == ['gone']
    assert writer.reader_gone is True

    devnull = os.stat(os.devnull)
    now = os.fstat(broken_pipe.fileno())
    assert (now.st_dev, now.st_ino, now.st_rdev) == (devnull.st_dev, devnull.st_ino, devnull.st_rdev)

    for _ in range(3):
        writer.write(EVENT)  # silent no-ops
    assert calls == ['gone']
    broken_pipe.write(b'anything\n')  # and the fd itself no longer fails, not even at close
    broken_pipe.flush()


def test_writer_on_a_broken_pipe_with_a_large_line(broken_pipe: BinaryIO) -> None:
    """Larger than the pipe and the buffer: the error comes from write, not flush."""
    calls: list[str] = []
    writer = LineWriter(broken_pipe, on_reader_gone=lambda: calls.append('gone'))
    writer.write({'big': 'x' * (1 << 20)})
    writer.write({'big': 'y'})
    assert calls == ['gone']
    assert writer.reader_gone is True


def test_writer_on_a_broken_pipe_without_a_file_descriptor() -> None:
    calls: list[str] = []
    writer = LineWriter(BrokenStream(), on_reader_gone=lambda: calls.append('gone'))
    writer.write(EVENT)
    writer.write(EVENT)
    assert calls == ['gone']
    assert writer.reader_gone is True


def test_writer_to_a_file_writes_the_same_bytes_as_encode(tmp_path: pathlib.Path) -> None:
    path = tmp_path / 'out.jsonl'
    events = [EVENT, {'label': json.loads('"\\ud800"')}, {'emoji': '🚀'}]
    with path.open('wb') as stream:
        writer = LineWriter(stream)
        for event in events:
            writer.write(event)
    assert path.read_bytes() == b''.join(encode(event) for event in events)
    assert [json.loads(line) for line in path.read_bytes().splitlines()] == events


class StuckStream(io.BytesIO):
    """A reader that takes nothing until ``go`` is set, then everything; or fails with ``error``."""

    def __init__(self, error: OSError | None = None) -> None:
        super().__init__()
        self.go = threading.Event()
        self.entered = threading.Event()  # the writer thread is in write: it holds the lines it took
        self.error = error

    def write(self, data: Any, /) -> int:
        self.entered.set()
        self.go.wait(60)  # a bound that turns a bug into a failure, not a pause of a loaded machine
        if self.error is not None:
            raise self.error
        return super().write(data)


def _spool(stream: BinaryIO, **kwargs: Any) -> Spool:
    return Spool(LineWriter(stream, on_reader_gone=lambda: None), **kwargs)


def test_spool_writes_in_order_and_commits_only_what_was_written() -> None:
    stream = StuckStream()
    committed: list[int] = []
    spool = _spool(stream)
    for number in range(3):
        spool.write({'n': number}, functools.partial(committed.append, number))
    assert stream.entered.wait(60)  # the thread took the first line(s) and waits for the reader
    assert committed == []  # nothing is written yet: nothing is committed
    stream.go.set()
    assert spool.close(5) == 0
    assert committed == [0, 1, 2]
    assert [json.loads(line) for line in stream.getvalue().splitlines()] == [{'n': 0}, {'n': 1}, {'n': 2}]


def test_spool_commits_an_unprinted_event_in_its_place_in_the_order() -> None:
    stream = StuckStream()
    committed: list[str] = []
    spool = Spool(LineWriter(stream, select=lambda event: None if event['skip'] else event))
    spool.write({'skip': False}, lambda: committed.append('printed'))
    spool.write({'skip': True}, lambda: committed.append('filtered'))
    assert stream.entered.wait(60)  # the thread holds the printed line, waiting for the reader
    assert committed == []  # the filtered one waits for the line before it
    stream.go.set()
    spool.close(5)
    assert committed == ['printed', 'filtered']


def test_spool_past_its_bound_calls_for_a_pause_and_for_the_end_of_it() -> None:
    stream = StuckStream()
    pressure: list[bool] = []
    spool = _spool(stream, high_water=1000, hard_limit=100_000, on_pressure=pressure.append)
    for _ in range(30):
        spool.write({'blob': 'x' * 100})
    assert pressure == [True]  # once, while the reader is stuck; write() never waited
    assert spool.waits == 0 and 1000 < spool.pending < 30 * 120
    stream.go.set()
    spool.close(5)
    assert pressure == [True, False]
    assert len(stream.getvalue().splitlines()) == 30


def test_spool_at_its_hard_limit_has_the_caller_await_room_while_the_loop_turns() -> None:
    """The caller waits for the reader without holding the loop: signals, probes, saves go on."""
    stream = StuckStream()
    spool = _spool(stream, high_water=500, hard_limit=1000)

    async def main() -> int:
        turns = 0

        async def other_work() -> None:  # runs only while the writer waits on the loop's terms
            nonlocal turns
            while True:
                turns += 1
                if turns == 100:
                    stream.go.set()  # the reader comes back
                await asyncio.sleep(0)

        worker = asyncio.create_task(other_work())
        for _ in range(20):
            spool.write({'blob': 'x' * 100})
            assert spool.pending <= 1000 + 200  # the bound, and the line just added
            await spool.room()
        worker.cancel()
        return turns

    assert asyncio.run(main()) >= 100
    assert spool.waits >= 1
    spool.close(5)
    assert len(stream.getvalue().splitlines()) == 20


def test_spool_on_a_full_disk_reports_once_and_commits_nothing() -> None:
    stream = StuckStream(OSError(28, 'No space left on device'))
    stream.go.set()
    failures: list[OSError] = []
    committed: list[int] = []
    spool = _spool(stream, on_failure=failures.append)
    for number in range(3):
        spool.write({'n': number}, functools.partial(committed.append, number))
    spool.close(5)
    assert [error.errno for error in failures] == [28]
    assert committed == [] and spool.stopped


def test_spool_on_a_broken_pipe_stops_and_commits_nothing_more(broken_pipe: BinaryIO) -> None:
    calls: list[str] = []
    committed: list[int] = []
    spool = Spool(LineWriter(broken_pipe, on_reader_gone=lambda: calls.append('gone')))
    for number in range(3):
        spool.write({'n': number}, functools.partial(committed.append, number))
    spool.close(5)
    assert calls == ['gone'] and committed == [] and spool.stopped


def test_spool_closed_with_a_stuck_reader_says_how_many_lines_were_left() -> None:
    stream = StuckStream()
    spool = _spool(stream)
    for number in range(4):
        spool.write({'n': number})
    assert spool.close(0.1) == 4  # three waiting, one in flight
    stream.go.set()


class RawStream(io.RawIOBase):
    """A raw file (its write says what it took): ``limit`` bytes a write at most, failing past ``fail_at``."""

    def __init__(self, *, limit: int = 1 << 30, fail_at: int | None = None) -> None:
        super().__init__()
        self.data = bytearray()
        self.writes = 0
        self.limit, self.fail_at = limit, fail_at
        self.go = threading.Event()
        self.go.set()
        self.entered = threading.Event()  # the writer thread is in write: it holds the lines it took

    def writable(self) -> bool:
        return True

    def write(self, data: Any, /) -> int:
        self.entered.set()
        self.go.wait(60)  # a bound that turns a bug into a failure, not a pause of a loaded machine
        self.writes += 1
        if self.fail_at is not None and len(self.data) >= self.fail_at:
            raise OSError(28, 'No space left on device')
        taken = bytes(data[:self.limit])
        self.data += taken
        return len(taken)


def test_spool_writes_the_lines_waiting_together_each_whole_and_commits_each_in_order() -> None:
    stream = RawStream()
    stream.go.clear()
    committed: list[int] = []
    written: list[tuple[str, bool]] = []
    spool = Spool(LineWriter(cast(BinaryIO, stream), on_reader_gone=lambda: None),
                  on_written=lambda kind, inferred: written.append((kind, inferred)))
    spool.write({'type': 'ADDED', 'n': 0}, functools.partial(committed.append, 0))
    assert stream.entered.wait(60)  # the first is taken alone and waits for the reader; the others queue
    for number in range(1, 6):
        spool.write({'type': 'MODIFIED', 'n': number, 'inferred': number == 5},
                    functools.partial(committed.append, number))
    stream.go.set()
    assert spool.close(5) == 0
    assert stream.writes == 2  # the one taken first, then the five that waited, in one write
    assert [json.loads(line)['n'] for line in bytes(stream.data).splitlines()] == [0, 1, 2, 3, 4, 5]
    assert committed == [0, 1, 2, 3, 4, 5]
    assert written == [('ADDED', False), *[('MODIFIED', False)] * 4, ('MODIFIED', True)]


def test_spool_failing_within_a_batch_commits_only_the_lines_written_whole() -> None:
    lines = [encode({'n': number, 'pad': 'x' * 50}) for number in range(6)]
    stream = RawStream(limit=len(lines[0]) * 2 + 10, fail_at=len(lines[0]) * 2 + 10)  # 2 lines and a bit
    stream.go.clear()
    failures: list[OSError] = []
    committed: list[int] = []
    spool = _spool(cast(BinaryIO, stream), on_failure=failures.append)
    for number in range(6):
        spool.write({'n': number, 'pad': 'x' * 50}, functools.partial(committed.append, number))
    stream.go.set()
    spool.close(5)
    assert [error.errno for error in failures] == [28] and spool.stopped
    whole, cut = bytes(stream.data).rsplit(b'\n', 1)
    assert cut  # a line was cut by the failure
    assert committed == list(range(whole.count(b'\n') + 1))  # the lines before it, not it, none after


def test_spool_writes_a_lone_line_at_once() -> None:
    stream = CountingStream()
    spool = _spool(stream)
    spool.write({'n': 1})
    deadline = time.monotonic() + 5
    while not stream.flushed and time.monotonic() < deadline:
        time.sleep(0.001)
    assert stream.flushed == [b'{"n":1}\n']  # nothing waits for company
    spool.close(5)


@pytest.fixture
def pipe() -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """A pipe as stdout is one: its reader (unbuffered, non-blocking) and its writer (unbuffered)."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    with os.fdopen(read_end, 'rb', buffering=0) as reader, os.fdopen(write_end, 'wb', buffering=0) as writer:
        yield reader, writer


def _drain(reader: BinaryIO, until: bytes, timeout: float = 10.0) -> bytes:
    """What the reader gets from now until it has read a chunk ending with ``until``."""
    data = b''
    deadline = time.monotonic() + timeout
    while not data.endswith(until) and time.monotonic() < deadline:
        data += reader.read(1 << 20) or b''
        time.sleep(0.001)
    return data


def test_spool_on_a_pipe_with_room_writes_and_commits_the_line_before_write_returns(
        pipe: tuple[BinaryIO, BinaryIO]) -> None:
    reader, stream = pipe
    committed: list[int] = []
    written: list[tuple[str, bool]] = []
    spool = Spool(LineWriter(stream, on_reader_gone=lambda: None),
                  on_written=lambda kind, inferred: written.append((kind, inferred)))
    for number in range(3):
        spool.write({'type': 'MODIFIED', 'n': number}, functools.partial(committed.append, number))
        assert committed == list(range(number + 1))  # on the caller's thread, no hand-over
    spool.write({'type': 'MODIFIED', 'n': 9}, None, held=0)
    assert reader.read(65536) == b''.join(encode({'type': 'MODIFIED', 'n': n}) for n in (0, 1, 2, 9))
    assert written == [('MODIFIED', False)] * 4
    assert spool.close(5) == 0


def test_spool_on_a_full_pipe_queues_behind_it_and_keeps_the_order(pipe: tuple[BinaryIO, BinaryIO]) -> None:
    reader, stream = pipe
    committed: list[int] = []
    spool = Spool(LineWriter(stream, on_reader_gone=lambda: None))
    lines = [{'n': number, 'pad': 'x' * 3000} for number in range(200)]  # ~600 KB: many pipes full
    for number, line in enumerate(lines):
        spool.write(line, functools.partial(committed.append, number))
    assert len(committed) < len(lines)  # the reader has read nothing: most of them wait
    data = _drain(reader, encode(lines[-1]))
    assert [json.loads(line)['n'] for line in data.splitlines()] == list(range(200))
    assert spool.close(5) == 0
    assert committed == list(range(200))


def test_spool_on_a_pipe_finishes_a_line_begun_at_once_and_never_drops_its_rest(
        pipe: tuple[BinaryIO, BinaryIO]) -> None:
    """A line larger than what the pipe has free is begun at once and ended by the thread:
    the reader gets it whole, before the lines written after it."""
    reader, stream = pipe
    committed: list[str] = []
    spool = Spool(LineWriter(stream, on_reader_gone=lambda: None))
    big = {'n': 'big', 'pad': 'y' * 200_000}  # more than a pipe holds: cannot all be taken at once
    spool.write(big, functools.partial(committed.append, 'big'))
    assert committed == []  # begun, not ended
    spool.write({'n': 'later'}, functools.partial(committed.append, 'later'))
    assert _drain(reader, encode({'n': 'later'})) == encode(big) + encode({'n': 'later'})
    assert spool.close(5) == 0
    assert committed == ['big', 'later'] and spool.dropped == 0


def test_spool_on_a_pipe_whose_reader_is_gone_stops_as_before() -> None:
    read_end, write_end = os.pipe()
    calls: list[str] = []
    committed: list[int] = []
    with os.fdopen(write_end, 'wb', buffering=0) as stream:
        spool = Spool(LineWriter(stream, on_reader_gone=lambda: calls.append('gone')))
        spool.write({'n': 0}, functools.partial(committed.append, 0))
        assert committed == [0]  # the reader was there: written at once
        os.close(read_end)
        for number in range(1, 4):
            spool.write({'n': number}, functools.partial(committed.append, number))
        spool.close(5)
    assert calls == ['gone'] and committed == [0] and spool.stopped


def _gathered(stream: BinaryIO, count: int) -> tuple[Spool, list[Any], list[int]]:
    """A spool with a loop that has not turned yet (``turns``), and ``count`` lines written to it."""
    turns: list[Any] = []
    committed: list[int] = []
    spool = Spool(LineWriter(stream, on_reader_gone=lambda: None), schedule=turns.append)
    for number in range(count):
        spool.write({'n': number}, functools.partial(committed.append, number))
    return spool, turns, committed


def test_spool_on_a_pipe_writes_what_the_loop_gathered_in_one_write_when_the_loop_turns(
        pipe: tuple[BinaryIO, BinaryIO]) -> None:
    """With a loop (``schedule``), the lines built while it works wait for it to turn, then go
    out in one write: a reader wakes once per burst, not once per line."""
    reader, stream = pipe
    spool, turns, committed = _gathered(stream, 5)
    assert len(turns) == 1 and committed == [] and reader.read(65536) is None  # nothing yet
    turns.pop()()  # the loop turns
    assert reader.read(65536) == b''.join(encode({'n': number}) for number in range(5))
    assert committed == [0, 1, 2, 3, 4]
    spool.write({'n': 5}, functools.partial(committed.append, 5))
    assert len(turns) == 1  # a new burst, a new turn
    assert spool.close(5) == 0  # the loop never turned again: close has the thread write it
    assert reader.read(65536) == encode({'n': 5}) and committed == [0, 1, 2, 3, 4, 5]


