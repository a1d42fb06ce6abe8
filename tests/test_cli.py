"""The command line: flags, KServe spellings, MODELPORT_* variables, errors before serving."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from modelport.cli import make_parser, run
from modelport.settings import build_settings
from tests.conftest import free_port, start_server


def settings_for(argv: list[str], environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    flags = vars(make_parser().parse_args(argv))
    flags["model_uri"] = flags.get("model_uri") or flags.get("model_dir")
    return build_settings(flags, environ or {})


def test_kserve_spellings_are_accepted() -> None:
    s = settings_for(
        [
            "serve",
            "--model_name",
            "m",
            "--model_dir",
            "/mnt/models",
            "--http_port",
            "9000",
            "--grpc_port",
            "9001",
        ]
    )
    assert (s.serve.model_name, s.serve.model_uri, s.serve.http_port, s.serve.grpc_port) == (
        "m",
        "/mnt/models",
        9000,
        9001,
    )


def test_flags_win_over_environment_which_wins_over_defaults() -> None:
    env = {"MODELPORT_HTTP_PORT": "7000", "MODELPORT_WORKERS": "3", "MODELPORT_MAX_BATCH_SIZE": "8"}
    s = settings_for(["serve", "m", "--http-port", "7100"], env)
    assert s.serve.http_port == 7100 and s.serve.workers == 3 and s.serve.batch.max_size == 8
    assert settings_for(["serve", "m"]).serve.http_port == 8080


def test_missing_model_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["serve"], environ={}) == 2
    assert "no model given" in capsys.readouterr().err


def _flatten_torch(torch_model: Path, dest: Path) -> Path:
    shutil.copytree(torch_model, dest)
    for f in (dest / "data").iterdir():
        f.rename(dest / f.name)
    (dest / "data").rmdir()
    return dest


@pytest.mark.slow
def test_flattened_layout_fails_before_serving(torch_model: Path, tmp_path: Path) -> None:
    flat = _flatten_torch(torch_model, tmp_path / "flat")
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "modelport", "serve", str(flat), "--http-port", str(port)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "data/model.pth" in proc.stderr and "flattened" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_body_over_the_limit_is_413(iris_model: Path, tmp_path: Path) -> None:
    server = start_server(iris_model, "--max-body-bytes", "1000", tmp=tmp_path)
    try:
        big = {"inputs": [{"name": "sepal_length", "datatype": "FP64", "shape": [500], "data": [1.0] * 500}]}
        resp = httpx.post(f"{server.base}/v2/models/iris/infer", json=big)
        assert resp.status_code == 413 and "over the limit of 1000 bytes" in resp.json()["error"]

        def chunks():  # type: ignore[no-untyped-def]
            yield b"x" * 800
            yield b"x" * 800

        resp = httpx.post(
            f"{server.base}/invocations", content=chunks(), headers={"content-type": "application/json"}
        )
        assert resp.status_code == 413
    finally:
        server.stop()


@pytest.mark.parametrize(
    "environ", [{"MODELPORT_HTTP_PORT": "eighty"}, {"MODELPORT_STORAGE_CONCURRENCY": "many"}]
)
def test_bad_values_in_the_environment_are_clear_errors(
    environ: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["serve", "m"], environ=environ) == 2
    err = capsys.readouterr().err
    assert "modelport: error:" in err and "Traceback" not in err
