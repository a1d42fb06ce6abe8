"""Re-create the bundled example model (examples/iris): a logistic regression on iris."""

from __future__ import annotations

import shutil
import sys
from importlib.metadata import version
from pathlib import Path

import mlflow.sklearn
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def main(dest: str) -> None:
    iris = load_iris(as_frame=True)
    features = iris.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    model = LogisticRegression(max_iter=500).fit(features, iris.target)
    out = Path(dest)
    shutil.rmtree(out, ignore_errors=True)
    example = features.head(2)
    mlflow.sklearn.save_model(
        model,
        out,
        signature=infer_signature(features, model.predict(features)),
        input_example=example,
        # Inference would also list whatever the saving process had imported (pytest, torch...).
        pip_requirements=[
            f"{name}=={version(name)}"
            for name in ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")
        ],
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent / "iris"))
