"""output.encode and output.LineWriter: one whole, flushed line per event; a gone reader is not an error."""
import io
import json
import os
import pathlib
from collections.abc import Iterator
from typing import Any, BinaryIO

import pytest

from deploywatch.output import LineWriter, encode

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
