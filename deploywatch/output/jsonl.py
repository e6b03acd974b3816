"""
The JSON line format: one compact UTF-8 JSON object per event, ended by a newline.

The default format, and the one the other encoders are measured against: a reader
(``jq``, Fluent Bit) splits the stream on newlines, so a line holds no raw newline.
"""
import json
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from deploywatch.base import encoding

# An event to its line: encode here, text.TextEncoder, cloudevents.encode.
Encoder = Callable[[Mapping[str, Any]], bytes]

LINE_OPTIONS = orjson.OPT_APPEND_NEWLINE | encoding.SPLICE


def encode(event: Mapping[str, Any]) -> bytes:
    """
    One line of UTF-8 JSON, by orjson: the line is built for every event, so speed matters.

    ``object`` and ``old`` are spliced in as the JSON the tracker already has for them
    (``encoding.Kept``) rather than encoded a second time. Non-ASCII text stays readable.
    What orjson refuses goes through the standard library: integers beyond 64 bits, and
    lone surrogates, which JSON from the API may carry as escapes but UTF-8 cannot:
    ``backslashreplace`` writes them back as the same ``\\udXXX`` JSON escape.
    """
    try:
        return orjson.dumps(event, option=LINE_OPTIONS, default=encoding.splice)
    except TypeError:  # orjson.JSONEncodeError is one
        text = json.dumps(event, ensure_ascii=False, separators=(',', ':'))
        return text.encode('utf-8', errors='backslashreplace') + b'\n'
