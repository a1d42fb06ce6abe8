"""IPC frames between the server and its workers: a JSON header plus raw buffers.

Layout: ``<u32 header length><u32 buffer count><u64 length per buffer><header><buffers...>``.
Tensors travel as raw buffers, never as JSON numbers or per-element pickles.
"""

from __future__ import annotations

import json
import struct
from typing import Any, List, Sequence, Tuple, Union

PREFIX = struct.Struct("<II")
LENGTH = struct.Struct("<Q")

Buffers = Sequence[Any]  # bytes-like objects (bytes, memoryview, numpy arrays)


def encode(header: dict, buffers: Buffers = ()) -> List[Any]:
    """Return the pieces of one frame, ready for ``writelines``/``sendmsg``."""
    head = json.dumps(header, separators=(",", ":")).encode()
    views = [memoryview(b).cast("B") for b in buffers]
    lengths = b"".join(LENGTH.pack(v.nbytes) for v in views)
    return [PREFIX.pack(len(head), len(views)) + lengths + head, *views]


def split_prefix(prefix: Union[bytes, bytearray]) -> Tuple[int, int]:
    return PREFIX.unpack(prefix)


def buffer_lengths(raw: Union[bytes, bytearray], count: int) -> List[int]:
    return [LENGTH.unpack_from(raw, i * LENGTH.size)[0] for i in range(count)]


def decode_header(raw: Union[bytes, bytearray]) -> dict:
    return json.loads(raw)


def read_frame_blocking(stream: Any) -> Tuple[dict, List[memoryview]]:
    """Read one frame from a buffered binary stream (worker side: ``sock.makefile("rb")``)."""
    head_len, count = split_prefix(_read_exact(stream, PREFIX.size))
    lengths = buffer_lengths(_read_exact(stream, LENGTH.size * count), count) if count else []
    header = decode_header(_read_exact(stream, head_len))
    buffers = [memoryview(_read_exact(stream, n)) for n in lengths]
    return header, buffers


def _read_exact(stream: Any, n: int) -> bytearray:
    buf = bytearray(n)  # writable, so arrays built on it are too
    view = memoryview(buf)
    got = 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            raise EOFError("peer closed the connection")
        got += k
    return buf
