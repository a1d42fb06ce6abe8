"""The server's side of the worker wire format, and that it is the only way to it."""

from __future__ import annotations

import ast
import asyncio
import socket
from pathlib import Path

import numpy as np

from modelport.errors import InvalidInput, ModelportError, UnsupportedMediaType
from modelport.workers import ipc

PACKAGE = Path(__file__).resolve().parents[2] / "modelport"


def test_only_the_workers_package_imports_the_runtime() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("_runtime", "workers"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            offenders += [f"{rel}: {n}" for n in names if "_runtime" in n or "modelport_worker" in n]
    assert offenders == []


def test_predict_frames_round_trip() -> None:
    arrays = [
        ("x", np.arange(6, dtype=np.float32).reshape(3, 2)),
        ("s", np.array(["a", "b", "c"], dtype=object)),
    ]
    header, buffers = ipc.encode_predict(arrays, "frame", {"k": 1})
    assert header["op"] == "predict" and header["layout"] == "frame" and header["params"] == {"k": 1}
    reply = {"kind": "dataframe", "outputs": header["inputs"]}
    result = ipc.decode_predict(reply, [memoryview(bytes(b)) for b in buffers])
    assert result.kind == "dataframe" and [n for n, _ in result.outputs] == ["x", "s"]
    np.testing.assert_array_equal(result.outputs[0][1], arrays[0][1])
    assert result.outputs[1][1].tolist() == ["a", "b", "c"]


def test_score_request_and_reply_carry_no_status() -> None:
    header, buffers = ipc.encode_score(b"{}", "application/json")
    assert header == {"op": "invocations", "content_type": "application/json"} and buffers == [b"{}"]
    result = ipc.decode_score({"id": 3, "ok": True, "mimetype": "application/json"}, [memoryview(b"{}")])
    assert result.content_type == "application/json" and result.body == b"{}"


def test_worker_errors_come_back_with_their_details() -> None:
    exc = ipc.error_of(
        {
            "ok": False,
            "code": "invalid_input",
            "message": "m",
            "details": {"mlflow_error_code": "BAD_REQUEST"},
        }
    )
    assert type(exc) is InvalidInput and exc.details == {"mlflow_error_code": "BAD_REQUEST"}
    plain = ipc.error_of(
        {
            "ok": False,
            "code": "unsupported_media_type",
            "message": "t",
            "details": {"mlflow_mimetype": "text/plain"},
        }
    )
    assert type(plain) is UnsupportedMediaType and plain.details["mlflow_mimetype"] == "text/plain"
    bare = ipc.error_of({"ok": False})
    assert type(bare) is ModelportError and bare.message == "worker error" and bare.details == {}


def test_frames_cross_both_ways_whole_split_and_glued() -> None:
    """The server's frames read by the runtime, and the runtime's frames (NaN in the header,
    buffers of every size, split byte by byte or glued together) read by the server's protocol."""
    from modelport._runtime.modelport_worker import framing

    big = np.arange(300_000, dtype=np.float64)  # 2.4 MB: many reads
    frames = [
        ({"id": 1, "ok": True, "x": float("nan")}, [b"abc", big]),
        ({"id": 2, "ok": True}, []),
        ({"id": 3, "ok": True, "s": "é"}, [b""]),
    ]
    wire = b"".join(bytes(p) for h, bufs in frames for p in framing.encode(h, bufs))

    async def read_back(chunks: list[bytes]) -> list[ipc.Reply]:
        got: list[ipc.Reply] = []
        a, b = socket.socketpair()
        b.setblocking(False)
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_unix_connection(lambda: ipc.FrameProtocol(got.append), sock=a)
        for chunk in chunks:
            await loop.sock_sendall(b, chunk)
        b.close()
        await asyncio.wait_for(proto.closed, 10)
        transport.close()
        return got

    small = [wire[:5], wire[5:9], wire[9:20], wire[20:]]
    for chunks in (small, [wire], [wire[i : i + 65536] for i in range(0, len(wire), 65536)]):
        got = asyncio.run(read_back(chunks))
        assert [h["id"] for h, _ in got] == [1, 2, 3]
        assert np.isnan(got[0][0]["x"]) and got[2][0]["s"] == "é"
        assert bytes(got[0][1][0]) == b"abc"
        assert np.array_equal(np.frombuffer(got[0][1][1], dtype=np.float64), big)
        assert got[1][1] == [] and bytes(got[2][1][0]) == b""
        got[0][1][0][0] = 0  # buffers stay writable (arrays are built on them)

    a, b = socket.socketpair()
    with a, b:
        a.sendall(
            b"".join(bytes(p) for p in ipc.encode({"op": "predict", "id": 9, "p": [1.5, None]}, [b"xy"]))
        )
        header, buffers = framing.read_frame_blocking(b.makefile("rb"))
    assert header == {"op": "predict", "id": 9, "p": [1.5, None]} and bytes(buffers[0]) == b"xy"
