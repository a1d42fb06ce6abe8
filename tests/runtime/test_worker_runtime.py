"""The worker runtime runs inside any model environment: Python >= 3.9, stdlib and numpy only."""

from __future__ import annotations

import ast
import glob
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from modelport._runtime.modelport_worker import framing, tensors

RUNTIME = Path(__file__).resolve().parents[2] / "modelport" / "_runtime" / "modelport_worker"
ALLOWED_TOP_LEVEL = {"numpy", "modelport_worker"}


def _python39() -> str | None:
    """A working Python 3.9 (pyenv shims exist for versions that are not active: try each)."""
    candidates = [*sorted(glob.glob("/root/.pyenv/versions/3.9*/bin/python")), shutil.which("python3.9")]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    return None


def test_imports_only_stdlib_and_numpy_at_module_level() -> None:
    import sys

    for path in RUNTIME.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [(node.module or "").split(".")[0]]
            for name in names:
                assert name in sys.stdlib_module_names or name in ALLOWED_TOP_LEVEL or name == "__future__", (
                    path.name,
                    name,
                )


@pytest.mark.skipif(_python39() is None, reason="no Python 3.9 interpreter on this machine")
def test_compiles_on_python_39(tmp_path: Path) -> None:
    files = [str(p) for p in RUNTIME.glob("*.py")]
    proc = subprocess.run([_python39(), "-m", "py_compile", *files], capture_output=True, text=True)  # type: ignore[list-item]
    assert proc.returncode == 0, proc.stderr


def test_frames_round_trip_tensors_of_every_kind() -> None:
    import socket

    arrays = {
        "f": np.arange(6, dtype=np.float32).reshape(2, 3),
        "i": np.array([1, -2], dtype=np.int64),
        "b": np.array([True, False]),
        "s": np.array(["a", "zoë"], dtype=object),
        "raw": np.array([b"\x00", b"\xff"], dtype=object),
        "mixed": np.array([None, 1], dtype=object),
        "empty": np.zeros((0, 4)),
    }
    buffers: list = []
    header = {"op": "predict", "inputs": [tensors.pack_array(n, a, buffers) for n, a in arrays.items()]}
    a, b = socket.socketpair()
    with a, b:
        for piece in framing.encode(header, buffers):
            a.sendall(piece)
        got_header, got_buffers = framing.read_frame_blocking(b.makefile("rb"))
    for descr in got_header["inputs"]:
        got = tensors.unpack_array(descr, got_buffers)
        want = arrays[descr["name"]]
        assert got.shape == want.shape and got.tolist() == want.tolist()
        if want.dtype.kind != "O":
            assert got.dtype == want.dtype and got.flags.writeable


def test_mlflow_statuses_become_modelport_codes_not_statuses() -> None:
    from modelport._runtime.modelport_worker.model import WorkerError, _code_of_status

    assert _code_of_status(415) == "unsupported_media_type"
    assert [_code_of_status(s) for s in (400, 404, 429)] == ["invalid_input"] * 3
    assert [_code_of_status(s) for s in (500, 501, 503)] == ["prediction_error"] * 3
    assert WorkerError("invalid_input", "m").details == {}
    err = WorkerError("invalid_input", "m", {"mlflow_error_code": "BAD_REQUEST"})
    assert err.details == {"mlflow_error_code": "BAD_REQUEST"}
