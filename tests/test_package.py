"""`modelport package --modelcar`: the build context holds the model under models/ and nothing else."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from modelport.errors import ModelportError
from modelport.package import package_modelcar
from modelport.settings import build_settings
from tests.conftest import EXAMPLE_IRIS


def test_context_is_the_model_and_a_two_line_containerfile(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def fake_build(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        context = Path(cmd[-1])
        seen["cmd"] = cmd
        seen["containerfile"] = (context / "Containerfile").read_text()
        seen["files"] = sorted(str(p.relative_to(context)) for p in context.rglob("*"))
        seen["modes"] = {oct(p.stat().st_mode & 0o777) for p in (context / "models").rglob("*")}
        return subprocess.CompletedProcess(cmd, 0)

    settings = build_settings({}, {"MODELPORT_CACHE_DIR": str(tmp_path / "cache")})
    got = package_modelcar(
        str(EXAMPLE_IRIS), "localhost/car:1", settings, base="busybox:1", builder="sh", run=fake_build
    )
    assert got == "localhost/car:1"
    assert seen["cmd"][1:4] == ["build", "-f", seen["cmd"][3]] and seen["cmd"][4:6] == [
        "-t",
        "localhost/car:1",
    ]
    lines = seen["containerfile"].splitlines()
    assert lines[:2] == ["FROM busybox:1", "COPY models /models"]
    model_files = sorted(p.name for p in EXAMPLE_IRIS.iterdir())
    assert seen["files"] == ["Containerfile", "models", *(f"models/{n}" for n in model_files)]
    assert seen["modes"] == {"0o644"}


def test_a_folder_that_is_no_mlflow_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "weights.bin").write_bytes(b"x")
    settings = build_settings({}, {"MODELPORT_CACHE_DIR": str(tmp_path / "cache")})
    with pytest.raises(ModelportError):
        package_modelcar(str(tmp_path / "m"), "x:1", settings, builder="sh", run=lambda *a, **k: None)


def test_a_failed_build_is_an_error(tmp_path: Path) -> None:
    settings = build_settings({}, {"MODELPORT_CACHE_DIR": str(tmp_path / "cache")})

    def failing(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(cmd, 3)

    with pytest.raises(ModelportError, match="build failed"):
        package_modelcar(str(EXAMPLE_IRIS), "x:1", settings, builder="sh", run=failing)
