"""Reading a model's environment files and deciding which differences matter (no builds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement

from modelport.envs.config import EnvSettings, redact
from modelport.envs.drift import InstalledEnv, classify, diff
from modelport.envs.requirements import read_model_env
from modelport.errors import EnvironmentError_

MLMODEL = """\
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    python_version: 3.11.7
  sklearn:
    pickled_model: model.pkl
mlflow_version: {mlflow}
"""

MARKERS = {
    "python_version": "3.11",
    "sys_platform": "linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "os_name": "posix",
    "python_full_version": "3.11.7",
    "platform_system": "Linux",
    "platform_release": "",
    "platform_version": "",
    "platform_python_implementation": "CPython",
    "implementation_version": "3.11.7",
}


def write_model(d: Path, reqs: str, mlflow: str = "2.9.2", python_env: str | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "MLmodel").write_text(MLMODEL.format(mlflow=mlflow))
    (d / "requirements.txt").write_text(reqs)
    (d / "python_env.yaml").write_text(
        python_env
        or (
            "python: 3.11.7\nbuild_dependencies:\n- pip\n- setuptools\n- wheel\ndependencies:\n- -r requirements.txt\n"
        )
    )
    return d


def installed(**pkgs: str) -> InstalledEnv:
    return InstalledEnv("/x/bin/python", "3.11.7", {k.replace("_", "-"): v for k, v in pkgs.items()}, MARKERS)


def test_reads_python_env_and_follows_includes(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "extra.txt").write_text("pyyaml==6.0.1  # comment\n")
    m = read_model_env(write_model(tmp_path / "m", "mlflow==2.9.2\nscikit-learn==1.3.2\n-r extra.txt\n"))
    assert m.python_version == "3.11.7"
    assert [str(r) for r in m.requirements] == ["mlflow==2.9.2", "scikit-learn==1.3.2", "pyyaml==6.0.1"]
    assert m.loader_module == "mlflow.sklearn" and m.flavor == "sklearn"
    # MLflow 2 imports pkg_resources, gone from setuptools 82: an unpinned setuptools is capped.
    assert m.build_requirements == ("pip", "setuptools<82", "wheel")
    assert "setuptools" not in " ".join(m.install_args)
    assert m.added == ("numpy",)


@pytest.mark.parametrize(
    ("saved", "mlflow", "built"),
    [
        # A saving venv whose setuptools was upgraded past 82 (torch needs >=77) recorded a pin
        # mlflow 2 cannot import under; a range is capped, an older exact pin kept.
        ("setuptools==84.2.1", "2.9.2", "setuptools<82"),
        ("setuptools>=60", "2.9.2", "setuptools<82,>=60"),
        ("setuptools==69.5.1", "2.9.2", "setuptools==69.5.1"),
        ("setuptools==84.2.1", "3.1.0", "setuptools==84.2.1"),
    ],
)
def test_setuptools_is_capped_where_mlflow_needs_pkg_resources(
    tmp_path: Path, saved: str, mlflow: str, built: str
) -> None:
    d = write_model(tmp_path / "m", "scikit-learn==1.3.2\n", mlflow=mlflow)
    (d / "python_env.yaml").write_text(
        f"python: 3.11.7\nbuild_dependencies:\n- pip\n- {saved}\ndependencies:\n- -r requirements.txt\n"
    )
    assert read_model_env(d).build_requirements == ("pip", built)


def test_adds_mlflow_at_the_model_version_when_missing(tmp_path: Path) -> None:
    m = read_model_env(write_model(tmp_path / "m", "scikit-learn==1.3.2\nnumpy==1.26.4\n", mlflow="2.11.1"))
    assert m.added == ("mlflow==2.11.1",)
    assert m.install_args[-1] == "mlflow==2.11.1"


def test_digest_changes_with_an_included_file(tmp_path: Path) -> None:
    d = write_model(tmp_path / "m", "mlflow==2.9.2\n-r extra.txt\n")
    (d / "extra.txt").write_text("pyyaml==6.0.1\n")
    first = read_model_env(d).digest
    (d / "extra.txt").write_text("pyyaml==6.0.2\n")
    assert read_model_env(d).digest != first
    assert read_model_env(d).digest == read_model_env(d).digest


def test_conda_yaml_only(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "MLmodel").write_text(
        MLMODEL.format(mlflow="1.30.0").replace("      virtualenv: python_env.yaml\n", "")
    )
    (d / "conda.yaml").write_text(
        "channels: [conda-forge]\ndependencies:\n- python=3.8.10\n- pip<=23\n- pip:\n  - mlflow<3,>=1.30\n  - cloudpickle==2.2.1\n"
    )
    m = read_model_env(d)
    assert m.python_version == "3.8.10"
    assert [r.name for r in m.requirements] == ["mlflow", "cloudpickle"]


def test_missing_include_is_a_clear_error(tmp_path: Path) -> None:
    d = write_model(tmp_path / "m", "mlflow==2.9.2\n-r nowhere.txt\n")
    with pytest.raises(EnvironmentError_, match="nowhere.txt"):
        read_model_env(d)


@pytest.mark.parametrize(
    ("req", "have", "kind", "blocking"),
    [
        ("scikit-learn==1.3.2", "1.3.2", "ok", False),
        ("scikit-learn==1.3.2", "1.3.0", "patch", False),
        ("scikit-learn==1.3.2", "1.9.1", "minor", True),
        ("numpy==1.26.4", "2.4.6", "major", True),
        ("torch==2.13.0", "2.13.0+cpu", "local", False),
        ("pyyaml==5.4", "6.0.3", "major", False),  # does not matter for predictions
        ("pandas>=1.5,<2", "2.1.0", "range", True),
        ("pandas>=1.5,<3", "2.1.0", "ok", False),
        ("cloudpickle", "3.1.2", "ok", False),
    ],
)
def test_classify(req: str, have: str, kind: str, blocking: bool) -> None:
    name = Requirement(req).name
    row = classify(Requirement(req), installed(**{name: have}), "pytorch" if name == "torch" else "sklearn")
    assert (row.kind, row.blocking) == (kind, blocking)


def test_missing_requirement_blocks_and_markers_are_evaluated() -> None:
    assert classify(Requirement("skops==0.9"), installed(), "sklearn").kind == "missing"
    assert classify(Requirement("skops==0.9"), installed(), "sklearn").blocking
    row = classify(Requirement("pywin32==306; sys_platform == 'win32'"), installed(), "sklearn")
    assert (row.kind, row.blocking) == ("skipped", False)


def test_diff_report(tmp_path: Path) -> None:
    m = read_model_env(write_model(tmp_path / "m", "mlflow==2.9.2\nscikit-learn==1.3.2\npyyaml==5.4\n"))
    report = diff(m, installed(mlflow="3.17.2", scikit_learn="1.3.2", pyyaml="6.0.3", numpy="2.4.6"))
    assert [r.name for r in report.blocking] == ["mlflow"]
    assert report.summary() == "mlflow 2.9.2 wanted, 3.17.2 installed"
    assert report.rows[0].name == "python" and report.rows[0].kind == "ok"
    assert report.to_dict()["blocking"] is True


def test_python_minor_difference_blocks(tmp_path: Path) -> None:
    m = read_model_env(
        write_model(
            tmp_path / "m",
            "mlflow==3.17.2\n",
            mlflow="3.17.2",
            python_env="python: 3.10.4\ndependencies:\n- -r requirements.txt\n",
        )
    )
    report = diff(m, installed(mlflow="3.17.2", numpy="2.4.6"))
    assert [(r.name, r.kind) for r in report.blocking] == [("python", "minor")]


def test_settings_read_index_variables_uv_first() -> None:
    env = {
        "PIP_INDEX_URL": "https://pip.example/simple",
        "UV_INDEX_URL": "https://u:tok@uv.example/simple",
        "PIP_EXTRA_INDEX_URL": "https://a.example/simple https://b.example/simple",
        "UV_FIND_LINKS": "/w1,/w2",
        "AWS_SECRET_ACCESS_KEY": "s",
        "HOME": "/h",
    }
    s = EnvSettings.from_flags({}, env)
    assert s.policy == "auto"
    assert s.index_url == "https://u:tok@uv.example/simple"
    assert s.extra_index_urls == ("https://a.example/simple", "https://b.example/simple")
    assert s.find_links == ("/w1", "/w2")
    assert s.python_dirs == (Path("/h/.pyenv/versions"),)
    # Storage credentials never reach uv or the probed interpreters.
    assert "AWS_SECRET_ACCESS_KEY" not in s.process_environ
    assert "tok" not in repr(s)
    assert redact("from https://u:tok@uv.example/simple") == "from https://***@uv.example/simple"
    assert EnvSettings.from_flags({"env": "tarball:s3://b/e.tgz"}, {}).policy_arg == "s3://b/e.tgz"
