"""The server's side of the worker wire format, and that it is the only way to it."""

from __future__ import annotations

import ast
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
