"""Scripts run by the tests under other interpreters: save a model, then load and predict with it.

Each runs as `PYTHON -I model_scripts.py save|predict ...` and needs only mlflow and scikit-learn.
"""

import json
import sys


def _data():
    import numpy as np
    import pandas as pd

    rng = np.random.RandomState(7)
    x = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    y = (x["a"] + 0.5 * x["b"] - x["c"] > 0).astype("int64")
    return x, y


def probe_frame():
    import pandas as pd

    return pd.DataFrame({"a": [0.1, -1.2, 2.5], "b": [1.0, 0.0, -0.5], "c": [0.3, 0.2, -2.0]})


def save(dest, optional_column):
    import mlflow
    import mlflow.sklearn
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    model = LogisticRegression().fit(x, y)
    cols = [ColSpec("double", n) for n in ["a", "b", "c"]]
    if optional_column:
        # MLflow 2.x spells it optional=True; 3.x required=False. Both write a column the model ignores.
        try:
            cols.append(ColSpec("string", "note", optional=True))
        except TypeError:
            cols.append(ColSpec("string", "note", required=False))
    signature = ModelSignature(inputs=Schema(cols), outputs=Schema([ColSpec("long")]))
    mlflow.sklearn.save_model(model, dest, signature=signature)
    proba = model.predict_proba(probe_frame())[:, 1].tolist()
    print(
        json.dumps(
            {"mlflow": mlflow.__version__, "proba": proba, "pred": model.predict(probe_frame()).tolist()}
        )
    )


def predict(model_dir):
    import mlflow
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(model_dir)
    pred = model.predict(probe_frame())
    proba = model._model_impl.sklearn_model.predict_proba(probe_frame())[:, 1].tolist()
    print(
        json.dumps(
            {
                "mlflow": mlflow.__version__,
                "pred": [int(v) for v in list(pred)],
                "proba": proba,
                "prefix": sys.prefix,
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "save":
        save(sys.argv[2], optional_column=len(sys.argv) > 3 and sys.argv[3] == "optional")
    else:
        predict(sys.argv[2])
