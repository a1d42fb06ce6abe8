"""Limits every request body is held to before and while it is decoded: JSON depth, decoded
size, and when a decode or encode is big enough to leave the event loop for a thread.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from modelport.errors import InvalidInput

# Bodies larger than this are decoded (and big responses encoded) in a thread, so the
# event loop keeps answering; smaller ones stay on the loop, where a thread hop costs more
# than the decode.
OFF_LOOP_BYTES = 1 << 20

# Deeper JSON is refused before any parser sees it. Real payloads nest a few levels
# (a tensor of up to 64 dimensions inside a body); the parsers (msgspec here, the
# model's MLflow in the worker) raise RecursionError somewhere near 1,000, depending
# on their interpreter and stack, and that would be a server error.
MAX_JSON_DEPTH = 100

# A request may decode to at most DECODED_PER_BODY_BYTE times its body, or DECODED_FLOOR
# for small bodies, computed from its shapes before anything is allocated. K = 8 is twice
# the largest ratio a request whose data matches its shapes can reach: JSON numbers of two
# bytes ("1,") becoming FP64 are 4x; a JSON BYTES element "" (3 bytes, counted at
# BYTES_ELEMENT_COST) is 5.3x; binary data is 1x, an empty binary BYTES element 4x. So no
# honest request is refused, and shapes that lie about their data are, however small the body.
DECODED_PER_BODY_BYTE = 8
DECODED_FLOOR = 1 << 20
# What a BYTES element costs beyond its payload: its slot in the object array (8 bytes) and
# its length prefix when framed for the worker (4), rounded up. The str/bytes object itself
# is made by the JSON parse, which the body's size already bounds.
BYTES_ELEMENT_COST = 16

T = TypeVar("T")

_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run a decode or encode of a large body in a thread, with the cyclic GC paused.

    The GC matters more than the thread: a body of a million small lists triggers enough
    collections to triple its decode time, all of it holding the GIL. What a decode
    allocates holds no cycles, and the pause ends with the last decode running.
    """
    return await asyncio.to_thread(_without_gc, fn, *args)


def _without_gc(fn: Callable[..., T], *args: Any) -> T:
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        return fn(*args)
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


_BRACKETS = np.zeros(256, np.int8)
_BRACKETS[[ord("["), ord("{")]] = 1
_BRACKETS[[ord("]"), ord("}")]] = -1
_SCAN_CHUNK = 1 << 18


def check_json_depth(body: bytes | memoryview, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` without parsing it."""
    raw = body if isinstance(body, bytes) else bytes(body)
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    depth = json_depth(raw)
    if depth > limit:
        raise InvalidInput(f"the request body's JSON is nested {depth} levels deep; the limit is {limit}")


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text, brackets in strings excluded.

    Exact for valid JSON and for the valid prefix of invalid JSON (all a parser reads
    before it stops). Vectorised, in chunks: a few ns a byte, mostly without the GIL.
    """
    if b"\\" in raw:
        # Blank out escapes, left to right as JSON reads them: "\\" pairs, then escaped quotes.
        raw = raw.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    text = np.frombuffer(raw, np.uint8)
    depth = best = in_string = 0
    for start in range(0, text.size, _SCAN_CHUNK):
        chunk = text[start : start + _SCAN_CHUNK]
        quotes = np.cumsum(chunk == ord('"'), dtype=np.int32)
        parity = int(quotes[-1]) & 1
        quotes &= 1  # 1 where an odd number of quotes came before: inside a string
        if in_string:
            quotes ^= 1
        step = np.take(_BRACKETS, chunk)
        np.multiply(step, quotes == 0, out=step)
        levels = np.cumsum(step, dtype=np.int32)
        best = max(best, depth + int(levels.max()))
        depth += int(levels[-1])
        in_string ^= parity
    return best


def check_decoded_size(decoded: int, body_size: int) -> None:
    """Refuse a request whose shapes claim more than its body can hold (see DECODED_PER_BODY_BYTE).

    InvalidInput, not PayloadTooLarge: the body is within --max-body-bytes; what is wrong is
    that its shapes disagree with its data, and a smaller body would not help.
    """
    limit = max(DECODED_PER_BODY_BYTE * body_size, DECODED_FLOOR)
    if decoded > limit:
        raise InvalidInput(
            f"the request's shapes need {decoded} bytes decoded, more than its body of "
            f"{body_size} bytes can hold (limit {limit} bytes: {DECODED_PER_BODY_BYTE}x the body, "
            f"at least {DECODED_FLOOR}); shapes and data disagree"
        )
