"""`modelport env diff`: the table, --json and the exit code, through the real CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from envs_support import make_settings, uv_environ

from modelport.envs import Interpreter
from modelport.envs.commands import diff_command

pytestmark = pytest.mark.slow


def test_diff_table_names_what_blocks(model_29: tuple[Path, dict], tmp_path: Path) -> None:
    out = io.StringIO()
    code = diff_command(str(model_29[0]), make_settings(tmp_path), python=None, as_json=False, out=out)
    text = out.getvalue()
    assert code == 1
    lines = text.splitlines()
    assert lines[0] == f"interpreter: {sys.executable}"
    assert lines[1].split() == ["requirement", "wanted", "installed", "difference", "matters", "verdict"]
    row = next(ln.split() for ln in lines if ln.startswith("scikit-learn"))
    assert row == ["scikit-learn", "==1.3.2", "1.9.1", "minor", "yes", "BLOCKS"]
    assert lines[-1].startswith("blocking drift (3): mlflow 2.9.2 wanted, 3.17.2 installed")


def test_diff_cli_json_and_exit_codes(
    model_29: tuple[Path, dict], env_29: Interpreter, tmp_path: Path
) -> None:
    cmd = [
        sys.executable,
        "-m",
        "modelport",
        "env",
        "diff",
        str(model_29[0]),
        "--json",
        "--cache-dir",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=uv_environ(), timeout=120)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["blocking"] is True
    rows = {r["name"]: r for r in report["rows"]}
    assert rows["mlflow"] == {
        "name": "mlflow",
        "wanted": "==2.9.2",
        "installed": "3.17.2",
        "kind": "major",
        "matters": True,
        "blocking": True,
    }
    assert rows["pyyaml"]["blocking"] is False
    proc = subprocess.run(
        [*cmd, "--python", env_29.python], capture_output=True, text=True, env=uv_environ(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["blocking"] is False


def test_diff_cli_error_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "modelport", "env", "diff", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        env=uv_environ(),
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("modelport: error: ") and "Traceback" not in proc.stderr
