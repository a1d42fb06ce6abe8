"""MLflow 1.x for the tests: a uv venv with the newest 1.x release, and an sklearn model saved by it.

Imported by tests/runtime and tests/envs (as tests.runtime.mlflow1_support).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from modelport.envs.build import uv_binary

REPO = Path(__file__).resolve().parents[2]
UV_CACHE = REPO / ".cache" / "uv"
# MLflow 1.30.1 is the last 1.x release; it supports Python 3.8 to 3.10.
MLFLOW1 = "1.30.1"
PY310 = Path("/root/.pyenv/versions/3.10.13/bin/python")
STACK = [f"mlflow=={MLFLOW1}", "scikit-learn==1.1.3", "numpy<2", "pandas<2", "setuptools<70"]
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
PROBE = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]

SAVE = r"""
import json, sys
import numpy as np, pandas as pd
import mlflow.sklearn
from mlflow.models.signature import infer_signature
from sklearn.linear_model import LogisticRegression

cols = json.loads(sys.argv[2])
rng = np.random.RandomState(0)
X = pd.DataFrame(rng.uniform(0, 8, size=(90, 4)), columns=cols)
y = (X[cols[2]] > 4).astype(int) + (X[cols[3]] > 5).astype(int)
model = LogisticRegression(max_iter=500).fit(X, y)
mlflow.sklearn.save_model(model, sys.argv[1], signature=infer_signature(X, model.predict(X)),
                          input_example=X.head(2))
probe = pd.DataFrame(json.loads(sys.argv[3]), columns=cols)
print(json.dumps({"predictions": model.predict(probe).tolist()}))
"""


def uv_environ() -> dict[str, str]:
    return {**os.environ, "UV_CACHE_DIR": str(UV_CACHE), "UV_PYTHON_DOWNLOADS": "never"}


def base_python() -> Path:
    return PY310 if PY310.exists() else Path(sys.base_prefix) / "bin" / "python3"


def make_venv(dest: Path, packages: list[str] = STACK, python: Path | None = None) -> Path:
    """A uv venv at `dest` (on `python`, else Python 3.10) holding `packages`; its Python."""
    uv, env = uv_binary(), uv_environ()
    base = python or base_python()
    subprocess.run([uv, "venv", "-q", "--python", str(base), str(dest)], check=True, env=env)
    python = dest / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), *packages], check=True, env=env, timeout=600
    )
    return python


def save_model(python: Path, dest: Path) -> list[int]:
    """Save an sklearn model with the MLflow under `python`; its predictions for PROBE."""
    proc = subprocess.run(
        [str(python), "-I", "-c", SAVE, str(dest), json.dumps(COLUMNS), json.dumps(PROBE)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(dest.parent),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["predictions"]
