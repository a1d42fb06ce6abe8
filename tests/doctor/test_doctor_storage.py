"""The fetch check against an S3 emulator, and the bundled environment.tar.gz check."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from doctor_support import doctor, environ


@pytest.mark.slow
def test_sibling_prefixes_named(moto, iris_model: Path, tmp_path: Path) -> None:
    client = moto.client()
    client.create_bucket(Bucket="doctor")
    for path in sorted(iris_model.iterdir()):
        client.put_object(Bucket="doctor", Key=f"models/iris/{path.name}", Body=path.read_bytes())
    client.put_object(Bucket="doctor", Key="models/iris-v2/MLmodel", Body=b"flavors: {}")
    client.put_object(Bucket="doctor", Key="models/iris.bak", Body=b"old")
    client.put_object(Bucket="doctor", Key="models/other/MLmodel", Body=b"flavors: {}")
    report = doctor("s3://doctor/models/iris", tmp_path, env=environ(**moto.env()))
    fetch = report.check("fetch")
    assert fetch.status == "warn"
    assert fetch.details["sibling_prefixes"] == ["s3://doctor/models/iris-v2/", "s3://doctor/models/iris.bak"]
    assert "fetched into the cache" in fetch.message
    assert fetch.details["files"] == len(list(iris_model.iterdir()))
    assert report.check("layout").status == "ok"


def _tarball(dest: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(dest, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_bundled_environment_tarball(iris_model: Path, copy_model, tmp_path: Path) -> None:
    model = copy_model(iris_model)
    _tarball(
        model / "environment.tar.gz",
        {
            "env/pyvenv.cfg": b"home = /usr/bin\nversion_info = 3.11.7\n",
            "env/lib/python3.11/site-packages/mlflow-3.17.2.dist-info/METADATA": b"Name: mlflow\n",
        },
    )
    env = doctor(model, tmp_path / "cache").check("environment")
    assert env.details["tarball"]["kind"] == "venv"
    assert env.details["tarball"]["mlflow"] == "3.17.2"
    assert "environment.tar.gz: venv environment, Python 3.11.7, mlflow 3.17.2" in env.message


def test_unusable_environment_tarball(iris_model: Path, copy_model, tmp_path: Path) -> None:
    model = copy_model(iris_model)
    _tarball(model / "environment.tar.gz", {"../escape.txt": b"x"})
    env = doctor(model, tmp_path / "cache").check("environment")
    assert env.status == "fail"
    assert "environment.tar.gz is unusable" in env.message and "outside" in env.message
    _tarball(model / "environment.tar.gz", {"just/a/file.txt": b"x"})
    env = doctor(model, tmp_path / "cache").check("environment")
    assert env.status == "fail" and "not a packed environment" in env.message
