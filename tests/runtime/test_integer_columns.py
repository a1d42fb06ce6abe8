"""A model fitted on a DataFrame with integer column names (pandas' default) is served over V2,
whose input names are strings: the worker hands MLflow the columns under their saved names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server

pytestmark = pytest.mark.slow

SAVE = r"""
import json, sys
import numpy as np, pandas as pd
import mlflow.sklearn
from mlflow.models import infer_signature
from sklearn.linear_model import LinearRegression
X = pd.DataFrame(np.arange(24.0).reshape(8, 3) ** 1.5, columns=[0, 1, 2])
y = X[0] * 2 - X[2] + 1
model = LinearRegression().fit(X, y)
mlflow.sklearn.save_model(model, sys.argv[1], signature=infer_signature(X, model.predict(X)))
probe = pd.DataFrame([[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]], columns=[0, 1, 2])
print(json.dumps(model.predict(probe).tolist()))
"""


def test_integer_column_names_over_v2(tmp_path: Path) -> None:
    model = tmp_path / "intcols"
    proc = subprocess.run(
        [sys.executable, "-c", SAVE, str(model)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = [float(v) for v in proc.stdout.strip().splitlines()[-1].strip("[]").split(",")]
    server = start_server(model, "--env", "local", tmp=tmp_path / "run")
    try:
        inputs = [
            {"name": "0", "datatype": "FP64", "shape": [2], "data": [1.0, 4.0]},
            {"name": "1", "datatype": "FP64", "shape": [2], "data": [2.0, 5.0]},
            {"name": "2", "datatype": "FP64", "shape": [2], "data": [3.0, 7.0]},
        ]
        resp = httpx.post(f"{server.base}/v2/models/intcols/infer", json={"inputs": inputs}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["outputs"][0]["data"] == pytest.approx(expected)
    finally:
        server.stop()
