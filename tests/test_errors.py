"""The error hierarchy and its two tables: every code has an HTTP status and a gRPC code."""

from __future__ import annotations

import pytest

from modelport import errors
from modelport.errors import (
    GRPC_STATUS,
    HTTP_STATUS,
    MethodNotAllowed,
    ModelportError,
    RequestTimeout,
    from_code,
)

# The gRPC codes an Open Inference Protocol server answers with (issue 8).
GRPC_CODES = {
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "UNAVAILABLE",
    "RESOURCE_EXHAUSTED",
    "DEADLINE_EXCEEDED",
    "UNIMPLEMENTED",
    "INTERNAL",
}


def test_every_error_has_an_http_status_and_a_grpc_code() -> None:
    codes = set(errors._BY_CODE)
    assert codes == set(HTTP_STATUS) == set(GRPC_STATUS)
    assert set(GRPC_STATUS.values()) <= GRPC_CODES


def test_grpc_codes_exist_in_grpc() -> None:
    grpc = pytest.importorskip("grpc")
    for name in GRPC_STATUS.values():
        assert isinstance(getattr(grpc.StatusCode, name), grpc.StatusCode)


def test_client_mistakes_are_never_internal() -> None:
    for code, cls in errors._BY_CODE.items():
        if issubclass(cls, errors.InvalidInput) and cls is not errors.PayloadTooLarge:
            assert GRPC_STATUS[code] == "INVALID_ARGUMENT", code
            assert 400 <= HTTP_STATUS[code] < 500, code


def test_method_not_allowed_is_in_the_hierarchy() -> None:
    exc = MethodNotAllowed("GET is not allowed on /invocations")
    assert isinstance(exc, ModelportError)
    assert HTTP_STATUS[exc.code] == 405 and GRPC_STATUS[exc.code] == "UNIMPLEMENTED"


def test_server_side_faults_map_to_internal_or_unavailable() -> None:
    assert GRPC_STATUS["layout_error"] == "INTERNAL"
    assert GRPC_STATUS["environment_error"] == "INTERNAL"
    assert GRPC_STATUS["timeout"] == "DEADLINE_EXCEEDED" and HTTP_STATUS["timeout"] == 504


def test_from_code_rebuilds_worker_errors_with_their_details() -> None:
    exc = from_code("invalid_input", "bad value", mlflow_error_code="INVALID_PARAMETER_VALUE")
    assert type(exc) is errors.InvalidInput
    assert exc.message == "bad value" and exc.details == {"mlflow_error_code": "INVALID_PARAMETER_VALUE"}
    assert type(from_code("timeout", "late")) is RequestTimeout
    unknown = from_code("no_such_code", "what")
    assert type(unknown) is ModelportError and unknown.code == "internal"
