"""
Baseline: the least a Python watcher can do, as one aiohttp loop.

LIST all Deployments, print each as an ADDED event, then WATCH from the list's
resourceVersion, parse each line and print it as one compact JSON line
(BOOKMARKs skipped), writing and flushing per line as deploywatch does. No
relist, no retry, no memory of objects: it is the floor for a Python client,
so the gap between it and deploywatch is what Kopf and deploywatch add.

Run as ``python bench/clients/rawwatch.py`` with ``KUBECONFIG`` pointing at the
benchmark's kubeconfig (JSON, one cluster with a bearer token).
"""
import asyncio
import contextlib
import json
import os
import sys

import aiohttp


async def main() -> None:
    with open(os.environ['KUBECONFIG']) as file:
        config = json.load(file)
    server = config['clusters'][0]['cluster']['server']
    headers = {'Authorization': f"Bearer {config['users'][0]['user']['token']}"}
    url = f'{server}/apis/apps/v1/deployments'
    out = sys.stdout.buffer
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        async with session.get(url) as response:
            response.raise_for_status()
            listing = await response.json()
        for item in listing['items']:
            out.write(json.dumps({'type': 'ADDED', 'object': item}, separators=(',', ':')).encode() + b'\n')
            out.flush()
        params = {'watch': 'true', 'allowWatchBookmarks': 'true',
                  'resourceVersion': listing['metadata']['resourceVersion']}
        del listing
        async with session.get(url, params=params) as response:
            response.raise_for_status()
            async for line in response.content:
                event = json.loads(line)
                if event.get('type') != 'BOOKMARK':
                    out.write(json.dumps(event, separators=(',', ':')).encode() + b'\n')
                    out.flush()


if __name__ == '__main__':
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
