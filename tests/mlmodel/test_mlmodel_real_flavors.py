"""Real models saved by the libraries themselves (sktime's own flavor, lightgbm, statsmodels)
under MLflow 3.17.2: the layout check accepts what each writes, and refuses exactly what its
loader cannot open (sktime: ``pickled_model: model`` is opened as ``model.zip``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from modelport.errors import LayoutError
from modelport.mlmodel import check_layout, read_model_spec
from tests.runtime.mlflow1_support import make_venv

pytestmark = pytest.mark.slow

PY311 = Path("/root/.pyenv/versions/3.11.7/bin/python")
PACKAGES = ["mlflow==3.17.2", "sktime==1.2.0", "lightgbm==4.7.0", "statsmodels==0.15.0"]

SAVE = {
    "sktime": r"""
import sys
import pandas as pd
from sktime.forecasting.naive import NaiveForecaster
from sktime.utils import mlflow_sktime
y = pd.Series([1.0, 2, 3, 4, 5, 6, 7, 8])
mlflow_sktime.save_model(NaiveForecaster(strategy="drift").fit(y, fh=[1, 2]), sys.argv[1])
""",
    "lightgbm": r"""
import sys
import numpy as np, lightgbm as lgb, mlflow.lightgbm
X = np.random.RandomState(0).rand(60, 3); y = X[:, 0] * 3 + X[:, 1]
mlflow.lightgbm.save_model(lgb.train({"verbose": -1}, lgb.Dataset(X, y), 5), sys.argv[1])
""",
    "statsmodels": r"""
import sys
import numpy as np, statsmodels.api as sm, mlflow.statsmodels
X = sm.add_constant(np.arange(20.0)); y = X[:, 1] * 2 + 1
mlflow.statsmodels.save_model(sm.OLS(y, X).fit(), sys.argv[1])
""",
}
PREDICT = {
    "sktime": "pd.DataFrame()",
    "lightgbm": "pd.DataFrame([[0.5, 0.5, 0.5]])",
    "statsmodels": "pd.DataFrame([[1.0, 3.0]])",
}
LOAD = r"""
import sys
import mlflow.pyfunc, numpy as np, pandas as pd
out = mlflow.pyfunc.load_model(sys.argv[1]).predict({data})
print(np.asarray(out).ravel().tolist())
"""
# The file each loader opens, as each library names it on disk.
MODEL_FILE = {"sktime": "model.zip", "lightgbm": "model.lgb", "statsmodels": "model.statsmodels"}


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not PY311.exists():
        pytest.skip("no Python 3.11")
    return make_venv(tmp_path_factory.mktemp("flavors") / "venv", PACKAGES, python=PY311)


def _run(python: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-I", "-c", script, *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("flavor", sorted(SAVE))
def test_real_model_layout(python: Path, tmp_path: Path, flavor: str) -> None:
    model = tmp_path / flavor
    saved = _run(python, SAVE[flavor], str(model))
    assert saved.returncode == 0, saved.stderr[-2000:]
    assert (model / MODEL_FILE[flavor]).is_file()
    check_layout(model, read_model_spec(model))
    loaded = _run(python, LOAD.format(data=PREDICT[flavor]), str(model))
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().splitlines()[-1].startswith("[")

    broken = tmp_path / f"{flavor}-broken"
    shutil.copytree(model, broken)
    # sktime: "model" without ".zip" is what its loader does not open; the others: file gone.
    (broken / MODEL_FILE[flavor]).rename(broken / "model")
    with pytest.raises(LayoutError, match=MODEL_FILE[flavor].replace(".", r"\.") + r" \("):
        check_layout(broken, read_model_spec(broken))
    assert _run(python, LOAD.format(data=PREDICT[flavor]), str(broken)).returncode != 0
