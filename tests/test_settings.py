"""Settings from the environment: KServe's kserve-mlserver variables below MODELPORT_*, modelcar mode."""

from __future__ import annotations

import pytest

from modelport.cli import make_parser
from modelport.errors import ModelportError
from modelport.settings import Settings, build_settings

# What KServe's shipped kserve-mlserver runtime gives its container: no args, these variables
# (the last two injected by the controller for `serving.kserve.io/server-type: mlserver`).
MLSERVER_ENV = {
    "MLSERVER_MODEL_IMPLEMENTATION": "mlserver_mlflow.MLflowRuntime",
    "MLSERVER_HTTP_PORT": "8080",
    "MLSERVER_GRPC_PORT": "9000",
    "MLSERVER_MODEL_NAME": "iris",
    "MLSERVER_MODEL_URI": "/mnt/models",
}


def serve_settings(argv: list[str], environ: dict[str, str]) -> Settings:
    flags = vars(make_parser().parse_args(["serve", *argv]))
    flags["model_uri"] = flags.get("model_uri") or flags.get("model_dir")
    return build_settings(flags, environ)


def test_serve_with_no_args_reads_the_kserve_mlserver_variables() -> None:
    s = serve_settings([], MLSERVER_ENV).serve
    assert (s.model_uri, s.model_name, s.http_port, s.grpc_port) == ("/mnt/models", "iris", 8080, 9000)


def test_the_model_implementation_is_ignored_with_one_note() -> None:
    notes = serve_settings([], MLSERVER_ENV).serve.notes
    assert len(notes) == 1
    assert "MLSERVER_MODEL_IMPLEMENTATION" in notes[0] and "ignored" in notes[0]
    assert serve_settings([], {}).serve.notes == ()


def test_modelport_variables_and_flags_win_over_mlserver_ones() -> None:
    env = {**MLSERVER_ENV, "MODELPORT_HTTP_PORT": "8181", "MODELPORT_MODEL_NAME": "mine"}
    s = serve_settings(["--grpc-port", "9191", "/models/x"], env).serve
    assert (s.model_uri, s.model_name, s.http_port, s.grpc_port) == ("/models/x", "mine", 8181, 9191)


def test_empty_mlserver_variables_count_as_unset() -> None:
    s = serve_settings([], {"MLSERVER_HTTP_PORT": "", "MLSERVER_MODEL_NAME": ""}).serve
    assert (s.http_port, s.model_name) == (8080, "")


def test_a_bad_mlserver_port_names_the_variable() -> None:
    with pytest.raises(ModelportError, match="MLSERVER_GRPC_PORT='nine'"):
        serve_settings([], {"MLSERVER_GRPC_PORT": "nine"})


def test_model_init_mode_and_wait_timeout() -> None:
    s = serve_settings([], {"MODEL_INIT_MODE": "async", "MODELPORT_MODEL_WAIT_TIMEOUT": "12"}).serve
    assert (s.model_init_mode, s.model_wait_timeout_s) == ("async", 12.0)
    assert serve_settings([], {}).serve.model_init_mode == ""


def test_worker_start_from_flag_or_variable() -> None:
    assert serve_settings([], {}).serve.worker_start == "fork"
    assert serve_settings([], {"MODELPORT_WORKER_START": "spawn"}).serve.worker_start == "spawn"
    env = {"MODELPORT_WORKER_START": "spawn"}
    assert serve_settings(["--worker-start", "fork"], env).serve.worker_start == "fork"
    with pytest.raises(ModelportError, match="MODELPORT_WORKER_START='thread'"):
        serve_settings([], {"MODELPORT_WORKER_START": "thread"})
