"""Serving writes nothing into the user's folder: MLflow's default tracking store (``mlruns/``
before 3.x, ``mlflow.db`` since) lands in the worker's private folder, removed at stop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.mlmodel import read_model_spec
from modelport.workers.batching import PredictCall, frame
from modelport.workers.pool import WorkerPool
from modelport.workers.template import plan_for
from tests.workers.sleepy import save_code_model

pytestmark = pytest.mark.slow

TRACED = textwrap.dedent(
    """
    import mlflow
    import mlflow.pyfunc


    class Traced(mlflow.pyfunc.PythonModel):
        @mlflow.trace
        def predict(self, context, model_input, params=None):
            return model_input
    """
)
STORES = ("mlruns", "mlflow.db")


@pytest.fixture(scope="module")
def traced_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_code_model(tmp_path_factory.mktemp("traced"), "traced_model", TRACED, "Traced", {"x": [1.0]})


def test_mlflow_itself_writes_its_store_into_the_current_folder(traced_model: Path, tmp_path: Path) -> None:
    """The failure being fixed, reproduced without modelport: load and predict in a folder."""
    script = (
        "import sys, pandas as pd, mlflow.pyfunc; "
        "mlflow.pyfunc.load_model(sys.argv[1]).predict(pd.DataFrame({'x': [1.0]}))"
    )
    subprocess.run(
        [sys.executable, "-I", "-c", script, str(traced_model)], cwd=tmp_path, check=True, capture_output=True
    )
    assert {p.name for p in tmp_path.iterdir()} & set(STORES)


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_serving_leaves_nothing_in_the_current_folder(
    traced_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: str
) -> None:
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.chdir(user)

    async def prepare_load(hello: dict[str, Any]) -> str:
        return str(traced_model)

    async def main() -> tuple[set[str], str]:
        pool = WorkerPool(
            sys.executable,
            1,
            prepare_load,
            model=f"traced-{start}",
            start=start,
            plan=plan_for(read_model_spec(traced_model)),
        )
        await pool.start()
        try:
            call = PredictCall([("x", np.asarray([2.0]))], "frame", None, 1)
            reply, _ = await pool.request(*frame(call))
            assert reply["ok"]
            worker_dir = Path(pool.workers[0].cwd or "")
            # MLflow exports traces from a background queue: give it a moment to write.
            for _ in range(200):
                if {p.name for p in worker_dir.iterdir()} & set(STORES):
                    break
                await asyncio.sleep(0.05)
            return {p.name for p in worker_dir.iterdir()}, pool._workdir
        finally:
            await pool.stop()

    in_worker_dir, workdir = asyncio.run(main())
    assert in_worker_dir & set(STORES), "the trace store should have gone to the worker's folder"
    assert list(user.iterdir()) == []
    assert not Path(workdir).exists()
