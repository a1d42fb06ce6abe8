"""The limits every body is held to: decoded size as a multiple of the body, JSON depth
without parsing, and the off-loop helper that pauses the GC."""

from __future__ import annotations

import asyncio
import gc
import json
import random
import threading

import pytest

from modelport import limits
from modelport.errors import InvalidInput


def test_decoded_size_limit_is_k_times_the_body_with_a_floor() -> None:
    k, floor = limits.DECODED_PER_BODY_BYTE, limits.DECODED_FLOOR
    limits.check_decoded_size(floor, 10)
    limits.check_decoded_size(k * 10 * floor, 10 * floor)
    with pytest.raises(InvalidInput, match="shapes and data disagree"):
        limits.check_decoded_size(floor + 1, 10)
    with pytest.raises(InvalidInput, match="more than its body"):
        limits.check_decoded_size(k * 10 * floor + 1, 10 * floor)


# --- JSON depth ------------------------------------------------------------------------------


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def test_json_depth_equals_the_parsed_depth_whatever_the_strings_hold() -> None:
    rng = random.Random(7)
    tricky = ["[", "]]]", "{", '"', '\\"[', "\\", "\\\\", '\\\\"', "a[b]c", "", "\\u005b"]

    def gen(level: int) -> object:
        roll = rng.random()
        if level > 7 or roll < 0.3:
            return rng.choice([*tricky, 1, 2.5, None, True])
        if roll < 0.65:
            return [gen(level + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(tricky): gen(level + 1) for _ in range(rng.randint(0, 3))}

    for _ in range(2000):
        value = gen(0)
        text = json.dumps(value).encode()
        assert limits.json_depth(text) == _depth(value), text


def test_json_depth_across_scan_chunks() -> None:
    # A string that opens in one chunk and closes in the next hides its brackets.
    pad = "x" * (limits._SCAN_CHUNK - 3)
    value = [pad + "[[[[", [[1]], "]]]]"]
    assert limits.json_depth(json.dumps(value).encode()) == 3
    deep = "[" * 300_000 + "]" * 300_000
    assert limits.json_depth(deep.encode()) == 300_000


def test_check_json_depth() -> None:
    limits.check_json_depth(b'{"a": "' + b"[" * 10_000 + b'"}')  # brackets in a string
    limits.check_json_depth(memoryview(b"[" * limits.MAX_JSON_DEPTH + b"]" * limits.MAX_JSON_DEPTH))
    too_deep = b"[" * (limits.MAX_JSON_DEPTH + 1) + b"]" * (limits.MAX_JSON_DEPTH + 1)
    with pytest.raises(InvalidInput, match=f"nested {limits.MAX_JSON_DEPTH + 1} levels deep"):
        limits.check_json_depth(too_deep)
    with pytest.raises(InvalidInput, match="nested 100000 levels deep"):
        limits.check_json_depth(b"[" * 100_000)  # unterminated: what a parser would recurse into


def test_off_loop_runs_in_a_thread_and_gives_the_gc_back() -> None:
    main = threading.get_ident()
    seen: list[tuple[int, bool]] = []

    def work(x: int) -> int:
        seen.append((threading.get_ident(), gc.isenabled()))
        return x * 2

    async def run() -> list[int]:
        return list(await asyncio.gather(*(limits.off_loop(work, i) for i in range(4))))

    assert gc.isenabled()
    assert asyncio.run(run()) == [0, 2, 4, 6]
    assert all(ident != main and not enabled for ident, enabled in seen)
    assert gc.isenabled()

    def boom() -> None:
        raise InvalidInput("bad")

    with pytest.raises(InvalidInput):
        asyncio.run(limits.off_loop(boom))
    assert gc.isenabled()
