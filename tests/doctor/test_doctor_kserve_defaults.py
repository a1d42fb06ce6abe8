"""The KServe objects doctor knows by heart agree with the manifests they restate."""

from __future__ import annotations

from pathlib import Path

import yaml
from doctor_support import KSERVE_SPECS, REPO

from modelport.doctor import kserve_defaults as builtin
from modelport.doctor.kserve import parse_quantity, storage_container
from modelport.doctor.schema import validate


def _load(path: Path) -> dict:
    return next(d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict))


def _formats(doc: dict) -> list[dict]:
    return doc["spec"]["supportedModelFormats"]


def test_modelport_runtime_matches_deploy() -> None:
    deployed = _load(REPO / "deploy" / "kserve" / "servingruntime.yaml")
    known = builtin.MODELPORT_RUNTIME
    assert deployed["metadata"]["name"] == known["metadata"]["name"]
    assert deployed["metadata"]["annotations"] == known["metadata"]["annotations"]
    assert _formats(deployed) == _formats(known)
    assert deployed["spec"]["protocolVersions"] == known["spec"]["protocolVersions"]
    assert deployed["spec"]["containers"][0]["resources"] == known["spec"]["containers"][0]["resources"]


def test_modelport_multimodel_runtime_matches_deploy() -> None:
    deployed = _load(REPO / "deploy" / "kserve" / "servingruntime-multimodel.yaml")
    known = builtin.MODELPORT_MULTIMODEL_RUNTIME
    assert deployed["metadata"]["name"] == known["metadata"]["name"]
    assert deployed["metadata"]["annotations"] == known["metadata"]["annotations"]
    assert deployed["spec"]["multiModel"] is known["spec"]["multiModel"] is True
    assert _formats(deployed) == _formats(known)
    assert deployed["spec"]["protocolVersions"] == known["spec"]["protocolVersions"]
    assert deployed["spec"]["containers"][0]["resources"] == known["spec"]["containers"][0]["resources"]


def test_modelport_storage_container_matches_deploy() -> None:
    deployed = _load(REPO / "deploy" / "kserve" / "storagecontainer.yaml")
    known = builtin.MODELPORT_STORAGE
    assert deployed["metadata"]["name"] == known["metadata"]["name"]
    assert deployed["spec"]["supportedUriFormats"] == known["spec"]["supportedUriFormats"]
    assert deployed["spec"]["workloadType"] == known["spec"]["workloadType"]


def test_kserve_mlserver_matches_kserve() -> None:
    shipped = _load(KSERVE_SPECS / "runtimes" / "kserve-mlserver.yaml")
    known = builtin.MLSERVER_RUNTIME
    assert shipped["metadata"] == known["metadata"]
    assert _formats(shipped) == _formats(known)
    assert shipped["spec"]["protocolVersions"] == known["spec"]["protocolVersions"]
    assert shipped["spec"]["containers"][0]["resources"] == known["spec"]["containers"][0]["resources"]


def test_quantities() -> None:
    assert parse_quantity("2Gi") == 2 * 2**30
    assert parse_quantity("500M") == 500e6
    assert parse_quantity(1000) == 1000
    assert parse_quantity("1.5Gi") == 1.5 * 2**30
    assert parse_quantity("lots") is None
    assert parse_quantity(None) is None


def test_storage_uris_as_kserve_sees_them() -> None:
    isvc: dict = {"spec": {"predictor": {}}}
    assert storage_container("pvc://claim/model", isvc, [])[0] == "ok"
    assert storage_container("oci://registry/model:1", isvc, [])[0] == "ok"
    status, name, why = storage_container("s3://b/m", isvc, [])
    assert (status, name) == ("ok", "default") and "modelport" in why  # both claim it; by name, default first
    assert storage_container("models:/iris/1", isvc, [])[1] == "modelport"
    status, _, why = storage_container(
        "models:/iris/1",
        isvc,
        [{**builtin.MODELPORT_STORAGE, "spec": {**builtin.MODELPORT_STORAGE["spec"], "disabled": True}}],
    )
    assert status == "warn" and "local path" in why  # KServe's regex wants "://"
    isvc = {"spec": {"predictor": {"storageContainerName": "modelport"}}}
    assert storage_container("hdfs://n/m", isvc, [])[0] == "fail"


def test_schema_validator() -> None:
    schema = {
        "type": "object",
        "required": ["a"],
        "properties": {
            "a": {"type": "string", "enum": ["x", "y"]},
            "n": {"x-kubernetes-int-or-string": True},
            "l": {"type": "array", "items": {"type": "integer"}},
        },
    }
    assert validate({"a": "x", "n": "1Gi", "l": [1]}, schema) == []
    assert validate({"a": "z", "n": True, "l": ["1"], "b": 1}, schema) == [
        "a: 'z' is not one of 'x', 'y'",
        "n: should be an integer or a string, found a boolean",
        "l[0]: should be an integer, found a string",
        "b: unknown field",
    ]
    assert validate({}, schema) == ["(root): required field 'a' is missing"]
