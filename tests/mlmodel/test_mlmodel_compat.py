"""rewrite_for_mlflow across the MLflow version boundaries, and shadow_model_dir on real folders."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import yaml
from mlmodel_cases import mlmodel_text

from modelport.errors import ModelLoadError
from modelport.mlmodel import parse_mlmodel, read_model_spec, rewrite_for_mlflow, shadow_model_dir
from modelport.mlmodel.types import ModelSpec


def _spec(inputs: list[dict], params: list[dict] | None = None, version: str = "2.5.0") -> ModelSpec:
    signature = {"inputs": json.dumps(inputs), "outputs": '[{"type": "double"}]'}
    if params is not None:
        signature["params"] = json.dumps(params)
    raw = {
        "flavors": {"python_function": {"loader_module": "mlflow.sklearn"}},
        "mlflow_version": version,
        "signature": signature,
    }
    return parse_mlmodel(yaml.safe_dump(raw))


def _inputs(rewritten: dict | None) -> list[dict]:
    assert rewritten is not None
    return json.loads(rewritten["signature"]["inputs"])


OPTIONAL_COLUMNS = [
    {"type": "double", "name": "a"},
    {"type": "string", "name": "b", "optional": True},
    {"type": "long", "name": "c", "optional": False},
]
REQUIRED_COLUMNS = [
    {"type": "double", "name": "a", "required": True},
    {"type": "string", "name": "b", "required": False},
]


@pytest.mark.parametrize(
    "installed", ["2.18.0", "2.21.3", "3.0.0", "3.17.2", "2.10.0rc0", "2.10.0", "2.17.2"]
)
def test_optional_becomes_required_false(installed: str) -> None:
    assert _inputs(rewrite_for_mlflow(_spec(OPTIONAL_COLUMNS), installed)) == [
        {"type": "double", "name": "a"},
        {"type": "string", "name": "b", "required": False},
        {"type": "long", "name": "c"},
    ]


@pytest.mark.parametrize("installed", ["2.4.0", "2.9.2"])
def test_required_becomes_optional(installed: str) -> None:
    assert _inputs(rewrite_for_mlflow(_spec(REQUIRED_COLUMNS, version="2.12.1"), installed)) == [
        {"type": "double", "name": "a"},
        {"type": "string", "name": "b", "optional": True},
    ]


def test_before_24_nothing_can_be_optional() -> None:
    assert _inputs(rewrite_for_mlflow(_spec(REQUIRED_COLUMNS), "2.3.2")) == [
        {"type": "double", "name": "a"},
        {"type": "string", "name": "b"},
    ]
    assert _inputs(rewrite_for_mlflow(_spec(OPTIONAL_COLUMNS), "1.30.1"))[1] == {
        "type": "string",
        "name": "b",
    }


@pytest.mark.parametrize(
    ("inputs", "installed"),
    [
        (REQUIRED_COLUMNS, "3.17.2"),
        (REQUIRED_COLUMNS, "2.10.0"),
        ([{"type": "double", "name": "a"}, {"type": "string", "name": "b", "optional": True}], "2.9.2"),
        ([{"type": "double", "name": "a"}], "1.20.0"),
        ([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}], "2.5.0"),
    ],
)
def test_no_change_needed(inputs: list[dict], installed: str) -> None:
    assert rewrite_for_mlflow(_spec(inputs), installed) is None


def test_no_signature_needs_no_change() -> None:
    assert rewrite_for_mlflow(parse_mlmodel(mlmodel_text("sklearn-1.14")), "2.9.2") is None


def test_params_type_becomes_dtype_for_26_only() -> None:
    params = [{"name": "alpha", "type": "double", "default": 0.5, "shape": None}]
    rewritten = rewrite_for_mlflow(_spec([{"type": "double"}], params), "2.6.0")
    assert rewritten is not None
    assert json.loads(rewritten["signature"]["params"]) == [
        {"name": "alpha", "default": 0.5, "shape": None, "dtype": "double"}
    ]
    assert rewrite_for_mlflow(_spec([{"type": "double"}], params), "2.7.0") is None
    # Before 2.6 MLflow ignores params, so they are left alone.
    assert rewrite_for_mlflow(_spec([{"type": "double"}], params), "2.5.0") is None


def test_params_dtype_of_26_stays_readable_later() -> None:
    spec = parse_mlmodel(mlmodel_text("pyfunc-2.6-params-dtype"))
    assert rewrite_for_mlflow(spec, "3.17.2") is None
    assert rewrite_for_mlflow(spec, "2.6.0") is None


@pytest.mark.parametrize(
    ("column", "installed", "needed"),
    [
        ({"type": "array", "items": {"type": "double"}, "name": "e"}, "2.9.2", "2.10"),
        ({"type": "object", "properties": {"a": {"type": "long"}}, "name": "o"}, "2.5.0", "2.10"),
        ({"type": "map", "values": {"type": "double"}, "name": "m"}, "2.11.0", "2.12"),
        (
            {"type": "array", "items": {"type": "map", "values": {"type": "any"}}, "name": "x"},
            "2.18.0",
            "2.19",
        ),
        ({"type": "sparkml_vector", "name": "v"}, "2.15.1", "2.16"),
    ],
)
def test_types_too_new_for_installed_mlflow(column: dict, installed: str, needed: str) -> None:
    spec = _spec([column], version="2.20.0")
    with pytest.raises(
        ModelLoadError, match=rf"MLflow >= {needed} is needed \(the model was saved with 2.20.0\)"
    ):
        rewrite_for_mlflow(spec, installed)


def test_nested_types_are_found_in_the_literal() -> None:
    spec = parse_mlmodel(mlmodel_text("pyfunc-2.20-map-any"))
    with pytest.raises(ModelLoadError, match="'any'.*2.19"):
        rewrite_for_mlflow(spec, "2.18.0")
    with pytest.raises(ModelLoadError, match="param 'config'.*'object'.*2.20"):
        rewrite_for_mlflow(spec, "2.19.0")
    assert rewrite_for_mlflow(spec, "2.20.0") is None


def test_skops_needs_39() -> None:
    spec = parse_mlmodel(mlmodel_text("sklearn-3.9-skops"))
    with pytest.raises(ModelLoadError, match=r"sklearn flavor was saved in the skops format.*MLflow >= 3.9"):
        rewrite_for_mlflow(spec, "3.8.0")
    assert rewrite_for_mlflow(spec, "3.9.0") is None


def test_bad_installed_version() -> None:
    with pytest.raises(ModelLoadError, match="cannot parse the installed MLflow version"):
        rewrite_for_mlflow(_spec(OPTIONAL_COLUMNS), "not-a-version")


def test_rewrite_keeps_everything_else_and_the_spec() -> None:
    spec = parse_mlmodel(mlmodel_text("sklearn-2.5-optional"))
    before = json.dumps(spec.raw, sort_keys=True)
    rewritten = rewrite_for_mlflow(spec, "3.17.2")
    assert rewritten is not None
    assert json.dumps(spec.raw, sort_keys=True) == before  # the input is not mutated
    assert {k: v for k, v in rewritten.items() if k != "signature"} == {
        k: v for k, v in spec.raw.items() if k != "signature"
    }
    assert rewritten["signature"]["outputs"] == spec.raw["signature"]["outputs"]
    reparsed = parse_mlmodel(yaml.safe_dump(rewritten))
    assert reparsed.signature == spec.signature


def test_round_trip_between_versions() -> None:
    spec = parse_mlmodel(
        mlmodel_text("sklearn-2.12-required-array").replace('"type": "array"', '"type": "string"')
    )
    spec = parse_mlmodel(
        yaml.safe_dump(
            {
                **spec.raw,
                "signature": {
                    "inputs": json.dumps(
                        [i for i in json.loads(spec.raw["signature"]["inputs"]) if i["type"] != "object"]
                    )
                },
            }
        )
    )
    old = rewrite_for_mlflow(spec, "2.9.2")
    assert old is not None
    back = rewrite_for_mlflow(parse_mlmodel(yaml.safe_dump(old)), "3.17.2")
    assert back is not None
    assert parse_mlmodel(yaml.safe_dump(back)).signature == spec.signature


def _model(make_model_dir) -> Path:
    return make_model_dir("sklearn-2.5-optional", "model.pkl", "conda.yaml", "code/helper.py")


def test_shadow_dir_holds_links_and_new_mlmodel(make_model_dir, tmp_path: Path) -> None:
    folder = _model(make_model_dir)
    original = (folder / "MLmodel").read_text()
    rewritten = rewrite_for_mlflow(read_model_spec(folder), "3.17.2")
    assert rewritten is not None
    shadow = shadow_model_dir(folder, rewritten, tmp_path / "shadows")
    assert shadow.parent == tmp_path / "shadows"
    assert sorted(p.name for p in shadow.iterdir()) == ["MLmodel", "code", "conda.yaml", "model.pkl"]
    for name in ("code", "conda.yaml", "model.pkl"):
        assert (shadow / name).is_symlink()
        assert (shadow / name).resolve() == (folder / name).resolve()
    assert not (shadow / "MLmodel").is_symlink()
    assert (shadow / "code" / "helper.py").read_text() == "contents of code/helper.py\n"
    assert (folder / "MLmodel").read_text() == original  # the user's files are untouched
    assert read_model_spec(shadow).signature == read_model_spec(folder).signature
    columns = json.loads(read_model_spec(shadow).raw["signature"]["inputs"])
    assert [c.get("required") for c in columns] == [None, False, None, False, None]
    assert not any("optional" in c for c in columns)


def test_shadow_dir_is_reused_and_leaves_no_temp(make_model_dir, tmp_path: Path) -> None:
    folder = _model(make_model_dir)
    rewritten = rewrite_for_mlflow(read_model_spec(folder), "3.17.2")
    assert rewritten is not None
    first = shadow_model_dir(folder, rewritten, tmp_path / "shadows")
    stamp = os.stat(first / "MLmodel").st_mtime_ns
    again = shadow_model_dir(folder, rewritten, tmp_path / "shadows")
    assert again == first
    assert os.stat(again / "MLmodel").st_mtime_ns == stamp
    other = rewrite_for_mlflow(read_model_spec(folder), "2.3.2")
    assert other is not None
    assert shadow_model_dir(folder, other, tmp_path / "shadows") != first
    assert sorted(p.name.startswith(".") for p in (tmp_path / "shadows").iterdir()) == [False, False]


def test_shadow_dir_race(make_model_dir, tmp_path: Path) -> None:
    folder = _model(make_model_dir)
    rewritten = rewrite_for_mlflow(read_model_spec(folder), "3.17.2")
    assert rewritten is not None
    results: list[Path] = []
    barrier = threading.Barrier(8)

    def build() -> None:
        barrier.wait()
        results.append(shadow_model_dir(folder, rewritten, tmp_path / "shadows"))

    threads = [threading.Thread(target=build) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert [p.name for p in (tmp_path / "shadows").iterdir()] == [results[0].name]


def test_shadow_dir_differs_per_source_folder(make_model_dir, tmp_path: Path) -> None:
    one = make_model_dir("sklearn-2.5-optional", "model.pkl", root="one")
    two = make_model_dir("sklearn-2.5-optional", "model.pkl", root="two")
    rewritten = rewrite_for_mlflow(read_model_spec(one), "3.17.2")
    assert rewritten is not None
    a = shadow_model_dir(one, rewritten, tmp_path / "s")
    b = shadow_model_dir(two, rewritten, tmp_path / "s")
    assert a != b
    assert (b / "model.pkl").resolve() == (two / "model.pkl").resolve()


def test_shadow_dir_failure_is_clean(make_model_dir, tmp_path: Path) -> None:
    folder = _model(make_model_dir)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the shadow root should be")
    with pytest.raises(ModelLoadError, match="cannot build the compatibility folder"):
        shadow_model_dir(folder, {"flavors": {}}, blocker)
    assert blocker.read_text().startswith("a file")
