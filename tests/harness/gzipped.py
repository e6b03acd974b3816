"""A gzipped body served as kube-apiserver sends one (chunked, in pieces), read back by aiohttp."""
import asyncio

import aiohttp
from aiohttp import web


def read_back(body: bytes, *, piece: int) -> bytes:
    """What aiohttp (its zlib backend as set now) reads of ``body`` sent gzipped in ``piece``-byte writes."""
    async def scenario() -> bytes:
        async def serve(request: web.Request) -> web.StreamResponse:
            headers = {'Content-Type': 'application/json', 'Content-Encoding': 'gzip'}
            answer = web.StreamResponse(headers=headers)
            answer.enable_chunked_encoding()
            await answer.prepare(request)
            for start in range(0, len(body), piece):  # pieces that cut members anywhere
                await answer.write(body[start:start + piece])
            await answer.write_eof()
            return answer

        app = web.Application()
        app.router.add_get('/', serve)
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
