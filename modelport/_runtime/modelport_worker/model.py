"""Load one MLflow model with the environment's own mlflow and run predictions on it."""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import fastpath
from .tensors import pack_array, unpack_array

Reply = Tuple[Dict[str, Any], List[Any]]

# Exceptions a model raises when the input does not suit it: answered as bad input (4xx),
# like MLflow's own scoring server does, rather than as a server fault.
INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)


class WorkerError(Exception):
    """An error to send back as plain data: a modelport error code, a message and details."""

    def __init__(self, code: str, message: str, details: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


class LoadedModel:
    def __init__(self, path: str) -> None:
        started = time.perf_counter()
        import mlflow.pyfunc

        self.path = path
        self.model = mlflow.pyfunc.load_model(path)
        self.load_s = time.perf_counter() - started
        self.accepts_params = "params" in inspect.signature(self.model.predict).parameters
        self.input_schema = self.model.metadata.get_input_schema()
        self.fast: Optional[fastpath.SklearnFastPath] = None
        self._scorer: Optional[Callable[[bytes, Optional[str]], Reply]] = None
        # Columns saved with non-string names (a DataFrame with integer columns): V2 names are
        # strings, MLflow's schema check wants the originals back.
        self.renames = _non_string_names(self.input_schema)

    def warm_up(self) -> Optional[float]:
        """Predict the saved input example once; None when the model has none."""
        info = getattr(self.model.metadata, "saved_input_example_info", None) or {}
        named = info.get("artifact_path") if isinstance(info, dict) else None
        if isinstance(named, str) and not os.path.exists(os.path.join(self.path, named)):
            # A folder copied without its example (or MLmodel plus the model file only) still
            # serves; only a warm-up is lost. The doctor's mlmodel check names the file.
            print(f"modelport: the saved input example {named} is missing: no warm-up", file=sys.stderr)
            return None
        try:
            example = self.model.metadata.load_input_example(self.path)
        except Exception as exc:  # a saved example that cannot be read means the model folder is broken
            raise WorkerError("model_load_error", f"cannot read the saved input example: {exc}") from exc
        params = None
        if isinstance(example, tuple) and len(example) == 2:
            example, params = example
        started = time.perf_counter()
        if example is not None:
            try:
                self._call(example, params)
            except Exception as exc:
                traceback.print_exc()
                raise WorkerError(
                    "model_load_error",
                    f"warm-up prediction on the saved input example failed: {_describe(exc)}",
                ) from exc
        elapsed = time.perf_counter() - started
        self.fast = fastpath.build(self.model, example)
        return elapsed if example is not None else None

    def predict(self, header: Dict[str, Any], buffers: List[Any]) -> Reply:
        arrays = [(d["name"], unpack_array(d, buffers)) for d in header["inputs"]]
        layout = header.get("layout", "dict")
        params = header.get("params")
        if self.fast is not None and not params and self.fast.accepts(arrays, layout):
            try:
                result = self.fast.predict(arrays)
            except Exception:
                result = None
                self.fast.failures += 1  # the full path below answers, or reports the error
            if result is not None:
                return _encode_result(result)
        data = _build_input(arrays, layout)
        if self.renames and layout == "frame":
            data = data.rename(columns=self.renames)
        try:
            result = self._call(data, params)
        except Exception as exc:
            raise _classify(exc) from exc
        return _encode_result(result)

    def invocations(self, header: Dict[str, Any], buffers: List[Any]) -> Reply:
        """MLflow's own /invocations handling, from this environment's mlflow.

        Its answers other than a prediction come back as errors, in plain data: MLflow's
        ``error_code`` for a MlflowException, the body and its type for a plain answer.
        """
        body = bytes(buffers[0]) if buffers else b""
        content_type = header.get("content_type")
        if self._scorer is None:
            try:
                self._scorer = _make_scorer(self.model, self.input_schema)
            except Exception as exc:
                what = "cannot set up this MLflow's scoring server"
                if isinstance(exc, ImportError):
                    # mlflow-skinny leaves out Flask, which MLflow 1.x's scoring server imports.
                    what += " (its dependencies are not installed in the model's environment; V2 does not need them)"
                raise glue_failed(what, exc) from exc
        return self._scorer(body, content_type)

    def _call(self, data: Any, params: Optional[Dict[str, Any]]) -> Any:
        if params and self.accepts_params:
            return self.model.predict(data, params=params)
        return self.model.predict(data)


def _non_string_names(schema: Any) -> Dict[str, Any]:
    try:
        names = schema.input_names() if schema is not None and schema.has_input_names() else []
    except Exception:  # an MLflow without these methods: names are strings there
        return {}
    return {str(n): n for n in names if n is not None and not isinstance(n, str)}


def _make_scorer(model: Any, input_schema: Any) -> Callable[[bytes, Optional[str]], Reply]:
    """MLflow's scoring for this mlflow: ``scoring_server.invocations`` where it exists (from
    MLflow 2.x), else the Flask view of ``scoring_server.init`` (1.x and the first 2.x releases),
    called through Flask's test client so that every answer is that version's own."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    if hasattr(scoring_server, "invocations"):

        def score(body: bytes, content_type: Optional[str]) -> Reply:
            try:
                resp = scoring_server.invocations(body, content_type, model, input_schema)
            except MlflowException as exc:
                code = _code_of_status(exc.get_http_status_code())
                raise WorkerError(code, exc.message, {"mlflow_error_code": exc.error_code}) from exc
            except Exception as exc:
                raise _classify(exc) from exc
            try:
                return _scored(resp.status, resp.response, resp.mimetype)
            except WorkerError:
                raise
            except Exception as exc:
                raise glue_failed("cannot read MLflow's scoring answer", exc) from exc

        return score

    client = scoring_server.init(model).test_client()

    def score_flask(body: bytes, content_type: Optional[str]) -> Reply:
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            resp = client.post("/invocations", data=body, headers=headers)
            status, data, mimetype = resp.status_code, resp.get_data(), resp.mimetype
        except Exception as exc:
            raise glue_failed("cannot call MLflow's scoring view", exc) from exc
        try:
            return _scored(status, data, mimetype)
        except WorkerError:
            raise
        except Exception as exc:
            raise glue_failed("cannot read MLflow's scoring answer", exc) from exc

    return score_flask


def _scored(status: int, response: Any, mimetype: str) -> Reply:
    """A reply for MLflow's answer; an error answer raised as a WorkerError in MLflow's terms."""
    data = response if isinstance(response, bytes) else str(response).encode()
    if status == 200:
        return {"mimetype": mimetype}, [data]
    text = data.decode("utf-8", "replace")
    code = _code_of_status(status)
    if mimetype == "application/json":
        # MLflow's catch_mlflow_exception: {"error_code": ..., "message": ...[, "stack_trace"]}
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if (
            isinstance(doc, dict)
            and isinstance(doc.get("error_code"), str)
            and isinstance(doc.get("message"), str)
        ):
            raise WorkerError(code, doc["message"], {"mlflow_error_code": doc["error_code"]})
    raise WorkerError(code, text, {"mlflow_mimetype": mimetype})


def glue_failed(what: str, exc: BaseException) -> WorkerError:
    """modelport's own code around MLflow failed: a server fault of modelport's, not the model's."""
    traceback.print_exc()
    return WorkerError("internal", f"modelport's glue failed: {what}: {_describe(exc)}")


def _build_input(arrays: List[Tuple[str, np.ndarray]], layout: str) -> Any:
    if layout == "single":
        return arrays[0][1]
    if layout == "frame":
        import pandas as pd

        columns = {}
        for name, arr in arrays:
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            columns[name] = list(arr) if arr.ndim > 1 else arr
        return pd.DataFrame(columns)
    return dict(arrays)


def _encode_result(result: Any) -> Reply:
    buffers: List[Any] = []
    kind, outputs, extra = _result_columns(result)
    descrs = []
    for name, value in outputs:
        try:
            descrs.append(pack_array(name, value, buffers))
        except (TypeError, ValueError):
            values = _jsonable(value)
            shape = [len(values)] if isinstance(values, list) else []
            descrs.append({"name": name, "dtype": "json", "shape": shape, "values": values})
    header: Dict[str, Any] = {"kind": kind, "outputs": descrs}
    if extra is not None:
        header["json"] = extra
    return header, buffers


def _result_columns(result: Any) -> Tuple[str, List[Tuple[str, Any]], Any]:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - mlflow always brings pandas
        pd = None
    if pd is not None and isinstance(result, pd.DataFrame):
        return "dataframe", [(str(c), result[c].to_numpy()) for c in result.columns], None
    if pd is not None and isinstance(result, pd.Series):
        return "series", [(str(result.name) if result.name is not None else "", result.to_numpy())], None
    if isinstance(result, np.ndarray):
        return "ndarray", [("", result)], None
    if isinstance(result, dict):
        return "dict", [(str(k), np.asarray(v)) for k, v in result.items()], None
    if isinstance(result, (list, tuple)):
        try:
            arr = np.asarray(result)
        except ValueError:
            arr = None
        if arr is not None and arr.dtype.kind in "biufUS":
            return "list", [("", arr)], None
        return "json", [], _jsonable(result)
    if np.isscalar(result):
        return "scalar", [("", np.asarray([result]))], None
    return "json", [], _jsonable(result)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def _classify(exc: Exception) -> WorkerError:
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover
        MlflowException = ()  # type: ignore[assignment,misc]  # noqa: N806
    if isinstance(exc, MlflowException):
        return WorkerError(_code_of_status(exc.get_http_status_code()), exc.message)
    if isinstance(exc, INPUT_ERRORS):
        return WorkerError("invalid_input", f"the model rejected the input: {_describe(exc)}")
    traceback.print_exc()
    return WorkerError("prediction_error", f"the model failed: {_describe(exc)}")


def _code_of_status(status: int) -> str:
    """The modelport error code for an HTTP status MLflow chose."""
    if status == 415:
        return "unsupported_media_type"
    return "invalid_input" if 400 <= status < 500 else "prediction_error"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
