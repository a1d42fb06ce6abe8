"""A custom pyfunc that sleeps as long as its input says and logs every call's tags.

``predict`` appends each row's ``tag`` to the file named by ``SLEEPY_LOG`` (when set),
then sleeps ``max(sleep)`` seconds, so tests can tell which requests reached the model.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

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


def save_sleepy_model(root: Path) -> Path:
    """Save the model under ``root``/model with real mlflow; return its folder."""
    import mlflow.pyfunc
    import pandas as pd

    root.mkdir(parents=True, exist_ok=True)
    (root / "sleepy_model.py").write_text(SLEEPY_CODE)
    sys.path.insert(0, str(root))
    try:
        import sleepy_model

        path = root / "model"
        mlflow.pyfunc.save_model(
            path,
            python_model=sleepy_model.Sleepy(),
            input_example=pd.DataFrame({"sleep": [0.0], "tag": ["warm-up"]}),
            code_paths=[str(root / "sleepy_model.py")],
            pip_requirements=["mlflow"],
        )
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("sleepy_model", None)
    return path


def v2_body(sleep: float, tag: str) -> dict[str, object]:
    return {
        "inputs": [
            {"name": "sleep", "datatype": "FP64", "shape": [1], "data": [sleep]},
            {"name": "tag", "datatype": "BYTES", "shape": [1], "data": [tag]},
        ]
    }
