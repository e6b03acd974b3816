"""
JSON bytes that are kept: what the tracker remembers of every live Deployment.

The tracker keeps each object encoded (see ``tracker.Remembered``), so at 100,000
Deployments the size of one kept ``bytes`` object *is* the operator's memory. Two
facts about orjson decide it:

* ``orjson.dumps`` returns its working buffer as the result without shrinking it:
  the allocation is rounded up to a power of two, at least 4 KiB (orjson 3.12 and
  later; measured with 3.13 on this project's Deployments: a 3.2 KB object held
  8.2 KB, a 0.2 KB list of ``managedFields`` stamps 4.1 KB). Harmless for a line
  that is written and freed; for what is kept, it was two thirds of the memory.
  So :func:`encode` copies the result into a ``bytes`` of its exact size
  (``bytes(memoryview(...))``, a memcpy of a few KB: well under a microsecond);
* orjson refuses lone surrogates and integers beyond 64 bits, and reads such
  integers back as floats: those objects (only hostile ones: the API server's
  types never carry them) are written by the standard library and marked with
  :data:`STDLIB`, so that :func:`decode` reads them back exactly.
"""
import json
from typing import Any

import orjson

STDLIB = b'\x00'  # marks bytes that only the standard library can read back exactly


def tight(data: bytes) -> bytes:
    """``data`` in an allocation of its own length (orjson's result is over-allocated)."""
    return bytes(memoryview(data))


def encode(obj: Any) -> bytes:
    """JSON bytes of an object to keep: orjson's, right-sized; the standard library's where orjson refuses."""
    try:
        return tight(orjson.dumps(obj))
    except TypeError:  # orjson.JSONEncodeError is one
        return STDLIB + json.dumps(obj, separators=(',', ':')).encode()


def decode(data: bytes) -> Any:
    return json.loads(data[1:]) if data[:1] == STDLIB else orjson.loads(data)
