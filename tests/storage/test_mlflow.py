"""The MLflow registry and tracking server (``mlflow server``, SQLite backend, artifacts on moto):
models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/latest, runs:/RUN_ID/path, mlflow-artifacts:/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from storage_servers import Moto
from storage_support import settings_for, tree

from modelport.errors import StorageError
from modelport.storage import fetch, resolve_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry(mlflow_server: str, moto: Moto, pytorch_model: Path) -> dict[str, Any]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    exp = client.create_experiment("storage-tests")
    run = client.create_run(exp)
    client.log_artifacts(run.info.run_id, str(pytorch_model), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("linear")
    v1 = client.create_model_version("linear", f"runs:/{run.info.run_id}/model", run.info.run_id)
    # Version 2 lives directly on S3 (a run in an experiment whose artifact location is s3://).
    moto.client().create_bucket(Bucket="direct-artifacts")
    exp2 = client.create_experiment("direct", artifact_location="s3://direct-artifacts/exp")
    run2 = client.create_run(exp2)
    import os

    old = {
        k: os.environ.get(k) for k in ("MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    os.environ.update(
        {
            "MLFLOW_S3_ENDPOINT_URL": moto.url,
            **{k: v for k, v in moto.env().items() if k != "AWS_ENDPOINT_URL"},
        }
    )
    try:
        client.log_artifacts(run2.info.run_id, str(pytorch_model), "model")
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    client.set_terminated(run2.info.run_id)
    v2 = client.create_model_version("linear", f"runs:/{run2.info.run_id}/model", run2.info.run_id)
    client.set_registered_model_alias("linear", "champion", v1.version)
    env = {**moto.env(), "MLFLOW_TRACKING_URI": mlflow_server}
    return {
        "run": run.info.run_id,
        "run2": run2.info.run_id,
        "v1": v1.version,
        "v2": v2.version,
        "env": env,
        "artifact_uri": run.info.artifact_uri,
    }


@pytest.mark.parametrize(
    "uri",
    [
        "models:/linear/1",
        "models:/linear@champion",
        "models:/linear/latest",
        "runs:/{run}/model",
        "{artifact_uri}/model",
        "runs:/{run2}/model",
    ],
)
def test_registry_uris_fetch_the_model(
    registry: dict[str, Any], pytorch_model: Path, tmp_path: Path, uri: str
) -> None:
    uri = uri.format(**registry)
    fetch(uri, tmp_path / "d", settings_for(registry["env"]))
    assert tree(tmp_path / "d") == tree(pytorch_model)


def test_latest_is_the_highest_version(registry: dict[str, Any], tmp_path: Path) -> None:
    assert registry["v2"] == "2"
    from modelport.storage.mlflow import resolve

    resolved = resolve("models:/linear/latest", settings_for(registry["env"]))
    assert resolved.startswith("s3://direct-artifacts/")


def test_registry_model_is_cached(registry: dict[str, Any], tmp_path: Path) -> None:
    settings = settings_for(registry["env"])
    first = resolve_model("models:/linear@champion", settings, tmp_path / "cache")
    assert resolve_model("models:/linear/1", settings, tmp_path / "cache") == first


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("models:/linear/99", "models:/linear/99"),
        ("models:/nope@x", "models:/nope@x"),
        ("runs:/0123abc/model", "runs:/0123abc"),
    ],
)
def test_unknown_registry_entries_are_clear_errors(
    registry: dict[str, Any], tmp_path: Path, uri: str, match: str
) -> None:
    with pytest.raises(StorageError, match=match):
        fetch(uri, tmp_path / "d", settings_for(registry["env"], retries=0))
    assert not (tmp_path / "d").exists()


def test_registry_uri_without_tracking_server_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="MLFLOW_TRACKING_URI"):
        fetch("models:/linear/1", tmp_path / "d", settings_for({}))
