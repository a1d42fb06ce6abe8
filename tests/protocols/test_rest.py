"""The HTTP edge's one error handler: statuses from the code table, MLflow's own statuses and
shapes for errors of MLflow's scoring code, MLflow's shapes on /invocations."""

from __future__ import annotations

import json

from modelport.errors import (
    InvalidInput,
    MethodNotAllowed,
    ModelNotReady,
    PayloadTooLarge,
    PredictionError,
    RequestTimeout,
    UnsupportedMediaType,
)
from modelport.protocols.rest import error_response
from modelport.protocols.scoring import MLFLOW_CODES, MLFLOW_HTTP_STATUS


def test_timeout_on_invocations_is_mlflows_deadline_exceeded() -> None:
    resp = error_response("/invocations", RequestTimeout("the request did not finish within 1 s"))
    assert resp.status == 504 and resp.content_type == b"application/json"
    assert (
        resp.body == b'{"error_code":"DEADLINE_EXCEEDED","message":"the request did not finish within 1 s"}'
    )
    # The code MLflow itself answers 504 for.
    assert MLFLOW_HTTP_STATUS[MLFLOW_CODES[504]] == 504


def test_modelport_errors_on_invocations_keep_their_shape() -> None:
    resp = error_response("/invocations", ModelNotReady("not yet"))
    assert (resp.status, resp.body) == (503, b'{"error_code":"TEMPORARILY_UNAVAILABLE","message":"not yet"}')
    resp = error_response("/invocations", PredictionError("boom"))
    assert (resp.status, resp.body) == (500, b'{"error_code":"INTERNAL_ERROR","message":"boom"}')
    resp = error_response("/invocations", PayloadTooLarge("big"))
    assert resp.status == 413 and resp.headers == {"connection": "close"}


def test_mlflow_errors_keep_mlflows_status_and_bytes() -> None:
    exc = InvalidInput('caf\u00e9 "x"', mlflow_error_code="RESOURCE_DOES_NOT_EXIST")
    resp = error_response("/invocations", exc)
    assert resp.status == 404
    assert (
        resp.body
        == json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": 'caf\u00e9 "x"'}).encode()
    )
    assert (
        error_response("/invocations", PredictionError("m", mlflow_error_code="SOMETHING_NEW")).status == 500
    )
    # V1 answers MLflow's errors with MLflow's status, in its own shape.
    v1 = error_response("/v1/models/m:predict", exc)
    assert (v1.status, v1.body) == (404, b'{"error":"caf\xc3\xa9 \\"x\\""}')


def test_mlflow_plain_answers_are_passed_on_as_they_were() -> None:
    exc = UnsupportedMediaType("The scoring server only supports UTF-8", mlflow_mimetype="text/plain")
    resp = error_response("/invocations", exc)
    assert (resp.status, resp.content_type, resp.body) == (
        415,
        b"text/plain",
        b"The scoring server only supports UTF-8",
    )


def test_method_not_allowed_is_405_with_allow_everywhere() -> None:
    resp = error_response("/invocations", MethodNotAllowed("GET is not allowed on /invocations"))
    assert (resp.status, resp.headers, resp.body) == (
        405,
        {"allow": "POST"},
        b'{"error":"GET is not allowed on /invocations"}',
    )
    resp = error_response("/v1/models/m", MethodNotAllowed("POST is not allowed on /v1/models/m"))
    assert resp.status == 405 and resp.headers == {"allow": "GET, HEAD"}
