"""
Baseline: a minimal Kopf watcher, ``kopf run bench/clients/kopfwatch.py -A --standalone``.

One ``@kopf.on.event`` handler that prints the raw event as one JSON line,
with Kopf's defaults for everything else. Against it, deploywatch's cost is
what deploywatch adds to Kopf (its watch loop, tracker, diff, clean-up and
its own JSON line), and what its settings save (no diff base, quieter logs).
The handler is ``async``: a sync one would run in Kopf's thread pool, which
is slower and not what a minimal watcher would choose.
"""
import json
import sys
from typing import Any

import kopf


@kopf.on.event('apps', 'v1', 'deployments')
async def print_event(event: kopf.RawEvent, **_: Any) -> None:
    sys.stdout.write(json.dumps(event, separators=(',', ':')) + '\n')
    sys.stdout.flush()
