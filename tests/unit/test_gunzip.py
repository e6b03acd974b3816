"""
aiohttp, Kopf's HTTP client, gunzips with ISA-L once deploywatch's loop is installed
(``listwatch.gunzip_with_isal``): the bytes it reads are the ones zlib read, for a LIST page
(one gzip member, read in pieces of at most aiohttp's bound) and for a v1.37 streaming list
(a member per flush). Served by a local aiohttp server, read by an aiohttp session.
"""
import asyncio
import gzip
import zlib
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.compression_utils import ZLibBackend
from isal import isal_zlib

from deploywatch.kube import listwatch

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


def served_and_read(body: bytes) -> bytes:
    async def scenario() -> bytes:
        async def handler(_: web.Request) -> web.StreamResponse:
            headers = {'Content-Encoding': 'gzip', 'Content-Type': 'application/json'}
            response = web.StreamResponse(headers=headers)
            await response.prepare(_)
            for at in range(0, len(body), 7001):  # chunked, as kube-apiserver flushes
                await response.write(body[at:at + 7001])
            await response.write_eof()
            return response

        app = web.Application()
        app.router.add_get('/', handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, '127.0.0.1', 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with (aiohttp.ClientSession() as session,
                        session.get(f'http://127.0.0.1:{port}/') as response):
                return b''.join([data async for data in response.content.iter_any()])
        finally:
            await runner.cleanup()

    return asyncio.run(scenario())


def test_a_gzipped_page_reads_the_same_through_isal(isal_backend: None) -> None:
    assert ZLibBackend._zlib_backend is isal_zlib
    packed = gzip.compress(PAGE, compresslevel=1)
    assert len(PAGE) > 16 * 2**16 > len(packed)  # many times aiohttp's bound (64 KiB) on one decompress call
    assert served_and_read(packed) == PAGE


def test_every_gzip_member_reads_the_same_through_isal(isal_backend: None) -> None:
    members = b''.join(gzip.compress(b''.join(EVENTS[at:at + 50])) for at in range(0, len(EVENTS), 50))
    assert served_and_read(members) == b''.join(EVENTS)


def test_zlib_reads_them_the_same(zlib_backend: None) -> None:
    """The reference: what the two tests above expect is what aiohttp with zlib reads."""
    assert served_and_read(gzip.compress(PAGE, compresslevel=1)) == PAGE
