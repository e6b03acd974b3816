"""
aiohttp, Kopf's HTTP client, gunzips with ISA-L once deploywatch's loop is installed
(``listwatch.gunzip_with_isal``): the bytes it reads are the ones zlib read, for a LIST page
(one gzip member, read in pieces of at most aiohttp's bound) and for a v1.37 streaming list
(a member per flush), served by a local aiohttp server (``tests.harness.gzipped``).
"""
import gzip
import zlib
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp.compression_utils import ZLibBackend
from isal import isal_zlib

from deploywatch.kube import listwatch
from tests.harness.gzipped import read_back

PAGE = b'{"kind":"DeploymentList","items":[' + b','.join(
    b'{"metadata":{"name":"web-%d","uid":"u-%d"},"spec":{"replicas":%d}}' % (i, i, i % 7)
    for i in range(20000)) + b']}'
EVENTS = [b'{"type":"ADDED","object":{"metadata":{"name":"web-%d"}}}\n' % i for i in range(300)]


@pytest.fixture
def isal_backend() -> Iterator[None]:
    """ISA-L as deploywatch installs it; then the backend as it was (a test may have installed ISA-L)."""
    before = ZLibBackend._zlib_backend
    listwatch.gunzip_with_isal()
    yield
    aiohttp.set_zlib_backend(before)


@pytest.fixture
def zlib_backend() -> Iterator[None]:
    before = ZLibBackend._zlib_backend
    aiohttp.set_zlib_backend(zlib)
    yield
    aiohttp.set_zlib_backend(before)


def test_a_gzipped_page_reads_the_same_through_isal(isal_backend: None) -> None:
    assert ZLibBackend._zlib_backend is isal_zlib
    packed = gzip.compress(PAGE, compresslevel=1)
    assert len(PAGE) > 16 * 2**16 > len(packed)  # many times aiohttp's bound (64 KiB) on one decompress call
    assert read_back(packed, piece=7001) == PAGE


def test_every_gzip_member_reads_the_same_through_isal(isal_backend: None) -> None:
    members = b''.join(gzip.compress(b''.join(EVENTS[at:at + 50])) for at in range(0, len(EVENTS), 50))
    assert read_back(members, piece=7001) == b''.join(EVENTS)


def test_zlib_reads_them_the_same(zlib_backend: None) -> None:
    """The reference: what the two tests above expect is what aiohttp with zlib reads."""
    assert read_back(gzip.compress(PAGE, compresslevel=1), piece=7001) == PAGE
