"""A custom pyfunc that sleeps as long as its input says and logs every call's tags.

``predict`` appends each row's ``tag`` to the file named by ``SLEEPY_LOG`` (when set),
then sleeps ``max(sleep)`` seconds, so tests can tell which requests reached the model.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any

SLEEPY_CODE = textwrap.dedent(
    """
    import os, time
    import pandas as pd
    import mlflow.pyfunc


    class Sleepy(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            log = os.environ.get("SLEEPY_LOG")
            if log:
                with open(log, "a") as f:
                    f.write("".join(f"{t}\\n" for t in model_input["tag"]))
            time.sleep(float(model_input["sleep"].max()))
            return pd.DataFrame({"slept": model_input["sleep"]})
    """
)


def save_code_model(root: Path, module: str, code: str, cls: str, example: dict[str, list[Any]]) -> Path:
    """Save the PythonModel ``cls`` defined by ``code`` (as module ``module``, shipped as a code
    path) under ``root``/model with real mlflow, ``example`` as its input example; return its folder."""
    import mlflow.pyfunc
    import pandas as pd

    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(code)
    sys.path.insert(0, str(root))
    try:
        python_model = getattr(importlib.import_module(module), cls)()
        path = root / "model"
        mlflow.pyfunc.save_model(
            path,
            python_model=python_model,
            input_example=pd.DataFrame(example),
            code_paths=[str(root / f"{module}.py")],
            pip_requirements=["mlflow"],
        )
    finally:
        sys.path.remove(str(root))
        sys.modules.pop(module, None)
    return path


def save_sleepy_model(root: Path) -> Path:
    """Save the model under ``root``/model with real mlflow; return its folder."""
    return save_code_model(root, "sleepy_model", SLEEPY_CODE, "Sleepy", {"sleep": [0.0], "tag": ["warm-up"]})


def v2_body(sleep: float, tag: str) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "sleep", "datatype": "FP64", "shape": [1], "data": [sleep]},
            {"name": "tag", "datatype": "BYTES", "shape": [1], "data": [tag]},
        ]
    }
