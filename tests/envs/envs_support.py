"""Helpers for the environment tests: settings, the uv cache, running scripts under other interpreters.

Imported by conftest.py and the test modules (the name is unique across tests/ on purpose).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from modelport.settings import Settings, build_settings

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).with_name("model_scripts.py")
UV_CACHE = REPO / ".cache" / "uv"
PY311 = Path("/root/.pyenv/versions/3.11.7/bin/python")
# The old MLflow the tests save a model with, and what it needs to import and pickle alike.
OLD_STACK = ["mlflow==2.9.2", "scikit-learn==1.3.2", "numpy<2", "pandas<2.2", "setuptools<70"]


def uv_environ(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"UV_CACHE_DIR": str(UV_CACHE), "UV_PYTHON_DOWNLOADS": "never", **extra})
    return env


def make_settings(
    cache_dir: Path, policy: str = "auto", environ: dict[str, str] | None = None, **flags: object
) -> Settings:
    return build_settings({"cache_dir": str(cache_dir), "env": policy, **flags}, environ or uv_environ())


def run_script(python: str | Path, *args: str, timeout: float = 300) -> dict:
    proc = subprocess.run(
        [str(python), "-I", str(SCRIPTS), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=uv_environ(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def predict_with(python: str | Path, model_dir: Path) -> dict:
    """Load the model with mlflow under `python` and predict the probe frame."""
    return run_script(python, "predict", str(model_dir))


def base_python() -> Path:
    return PY311 if PY311.exists() else Path(sys.base_prefix) / "bin" / "python3"


def cache_leftovers(cache_dir: Path) -> list[str]:
    """Entries of a cache that are not ready environments: unfinished builds or temp folders."""
    root = cache_dir / "envs"
    if not root.exists():
        return []
    out = []
    for p in root.iterdir():
        if p.suffix == ".lock" or p.name.endswith(".ready.json"):
            continue
        if p.name.startswith(".tmp-") or not p.with_name(f"{p.name}.ready.json").exists():
            out.append(p.name)
    return out
