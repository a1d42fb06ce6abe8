"""KServe's credential conventions: AWS_CA_BUNDLE against moto over TLS, STORAGE_CONFIG against moto,
KServe's Azure variables against Azurite; what no emulator here can check, as the obstore config built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from obstore.store import AzureStore, S3Store
from storage_servers import AWS, AZ_ACCOUNT, AZ_KEY, Moto, TlsFiles, azure_create_container
from storage_support import settings_for, tree

from modelport.errors import StorageError
from modelport.settings import build_settings
from modelport.storage import fetch
from modelport.storage.azure import store_args
from modelport.storage.config import StorageSettings, storage_spec_environ
from modelport.storage.s3 import s3_client_options, s3_config

REPO = Path(__file__).resolve().parents[2]
MODEL = {"MLmodel": b"flavors: {}\n", "data/model.pth": b"\x00" * 1000, "code/__init__.py": b""}
SECRET = "kserve-secret-never-shown"


def put_s3(moto: Moto, bucket: str, prefix: str, verify: str | bool = True) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=moto.url,
        aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
        verify=verify,
    )
    client.create_bucket(Bucket=bucket)
    for rel, body in MODEL.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=body)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A clean environment: only what a KServe pod would be given, plus what Python needs.
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return subprocess.run(
        [sys.executable, "-m", "modelport", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


# --- AWS_CA_BUNDLE against moto behind TLS ---------------------------------------------------


@pytest.fixture(scope="module")
def tls_bucket(tls_moto: tuple[Moto, TlsFiles]) -> tuple[Moto, TlsFiles, str]:
    moto, tls = tls_moto
    put_s3(moto, "tls-models", "iris", verify=str(tls.ca))
    return moto, tls, "s3://tls-models/iris"


@pytest.mark.slow
def test_ca_bundle_trusts_a_private_ca(tls_bucket: tuple[Moto, TlsFiles, str], tmp_path: Path) -> None:
    moto, tls, uri = tls_bucket
    env = {**moto.env(), "AWS_CA_BUNDLE": str(tls.ca)}
    fetch(uri, tmp_path / "m", settings_for(env))
    assert tree(tmp_path / "m") == MODEL


@pytest.mark.slow
def test_without_the_ca_bundle_the_certificate_error_is_clear_and_quick(
    tls_bucket: tuple[Moto, TlsFiles, str], tmp_path: Path
) -> None:
    moto, _, uri = tls_bucket
    started = time.monotonic()
    with pytest.raises(
        StorageError, match=r"TLS certificate of the server refused \(UnknownIssuer\)"
    ) as info:
        fetch(uri, tmp_path / "m", settings_for(moto.env()))
    assert "AWS_CA_BUNDLE" in str(info.value)
    assert time.monotonic() - started < 30  # not retried as if the network had hiccupped
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_storage_initializer_with_ca_bundle_and_without(
    tls_bucket: tuple[Moto, TlsFiles, str], tmp_path: Path
) -> None:
    moto, tls, uri = tls_bucket
    ok = run_cli(
        "storage-initializer", uri, str(tmp_path / "a"), env={**moto.env(), "AWS_CA_BUNDLE": str(tls.ca)}
    )
    assert ok.returncode == 0, ok.stderr
    assert tree(tmp_path / "a") == MODEL
    refused = run_cli("storage-initializer", uri, str(tmp_path / "b"), env=moto.env())
    assert refused.returncode == 1
    assert "TLS certificate of the server refused (UnknownIssuer)" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.slow
def test_verify_ssl_off_needs_no_bundle_and_ignores_one(
    tls_bucket: tuple[Moto, TlsFiles, str], tmp_path: Path
) -> None:
    moto, _, uri = tls_bucket
    env = {**moto.env(), "S3_VERIFY_SSL": "0", "AWS_CA_BUNDLE": str(tmp_path / "missing.pem")}
    fetch(uri, tmp_path / "m", settings_for(env))
    assert tree(tmp_path / "m") == MODEL


def test_a_missing_or_empty_ca_bundle_is_named(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"cannot read the CA bundle .*missing.pem \(AWS_CA_BUNDLE\)"):
        s3_client_options(StorageSettings(aws_ca_bundle=str(tmp_path / "missing.pem")))
    (tmp_path / "empty.pem").write_text("not a certificate")
    with pytest.raises(StorageError, match="holds no PEM certificate"):
        s3_client_options(StorageSettings(aws_ca_bundle=str(tmp_path / "empty.pem")))


def test_kserve_global_ca_bundle_configmap_is_used_when_aws_ca_bundle_is_unset() -> None:
    env = {
        "CA_BUNDLE_CONFIGMAP_NAME": "odh-trusted-ca",
        "CA_BUNDLE_VOLUME_MOUNT_POINT": "/etc/ssl/custom-certs",
    }
    assert StorageSettings.from_environ(env).aws_ca_bundle == "/etc/ssl/custom-certs/cabundle.crt"
    assert StorageSettings.from_environ({**env, "AWS_CA_BUNDLE": "/x.pem"}).aws_ca_bundle == "/x.pem"


# --- STORAGE_CONFIG / STORAGE_OVERRIDE_CONFIG (the InferenceService `storage:` key) ---------------


def storage_config(moto_url: str, **extra: object) -> str:
    return json.dumps(
        {
            "type": "s3",
            "access_key_id": AWS["AWS_ACCESS_KEY_ID"],
            "secret_access_key": SECRET,
            "endpoint_url": moto_url,
            "bucket": "spec-models",
            "region": "us-east-1",
            **extra,
        }
    )


@pytest.mark.slow
def test_storage_config_fetches_from_moto_through_the_cli(moto: Moto, tmp_path: Path) -> None:
    put_s3(moto, "spec-models", "sklearn/iris")
    env = {
        # What KServe's controller sets for `storage: {key: localMinIO, path: sklearn/iris}`: the
        # secret entry, the parameters, and the URI it built from the bucket and the path.
        "STORAGE_CONFIG": storage_config("http://127.0.0.1:1"),
        "STORAGE_OVERRIDE_CONFIG": json.dumps({"type": "s3", "endpoint_url": moto.url}),
        # Overridden by STORAGE_CONFIG, as KServe's storage initializer does.
        "AWS_ACCESS_KEY_ID": "wrong",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:2",
    }
    done = run_cli("storage-initializer", "s3://spec-models/sklearn/iris", str(tmp_path / "m"), env=env)
    assert done.returncode == 0, done.stderr
    assert tree(tmp_path / "m") == MODEL
    missing = run_cli("fetch", "s3://spec-models/nothing-here", str(tmp_path / "n"), env=env)
    assert missing.returncode != 0 and "nothing found" in missing.stderr
    assert SECRET not in done.stderr + done.stdout + missing.stderr + missing.stdout


@pytest.mark.slow
def test_storage_config_ca_bundle_and_boolean_fields(
    tls_bucket: tuple[Moto, TlsFiles, str], tmp_path: Path
) -> None:
    moto, tls, uri = tls_bucket
    settings = settings_for(
        {"STORAGE_CONFIG": storage_config(moto.url, ca_bundle=str(tls.ca), verify_ssl=True)}
    )
    fetch(uri, tmp_path / "m", settings)
    assert tree(tmp_path / "m") == MODEL
    insecure = settings_for({"STORAGE_CONFIG": storage_config(moto.url, verify_ssl=False)})
    assert insecure.s3_verify_ssl is False
    fetch(uri, tmp_path / "n", insecure)


def test_storage_config_maps_kserve_keys_and_the_override_wins() -> None:
    env = {
        "STORAGE_CONFIG": storage_config("https://minio.example:9000", anonymous="true"),
        "STORAGE_OVERRIDE_CONFIG": json.dumps({"type": "s3", "region": "eu-west-3", "bucket": "other"}),
    }
    assert storage_spec_environ(env) == {
        "AWS_ENDPOINT_URL": "https://minio.example:9000",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "eu-west-3",
        "awsAnonymousCredential": "true",
    }
    s = StorageSettings.from_environ(env)
    assert (s.aws_endpoint_url, s.aws_region, s.aws_anonymous) == (
        "https://minio.example:9000",
        "eu-west-3",
        True,
    )
    assert SECRET not in repr(s) and SECRET in s.secrets()


def test_storage_config_of_other_types_is_ignored() -> None:
    for kind in ("hdfs", "webhdfs", None):
        env = {"STORAGE_CONFIG": json.dumps({"type": kind, "secret_access_key": SECRET}), "AWS_REGION": "x"}
        assert storage_spec_environ(env) == {}
        assert StorageSettings.from_environ(env).aws_secret_access_key is None


@pytest.mark.parametrize("text", [f'{{"type": "s3", "secret_access_key": "{SECRET}"', f'["{SECRET}"]'])
def test_bad_storage_config_is_a_clear_error_without_the_secret(text: str) -> None:
    with pytest.raises(ValueError, match="STORAGE_CONFIG") as info:
        StorageSettings.from_environ({"STORAGE_CONFIG": text})
    assert SECRET not in str(info.value)
    from modelport.errors import ModelportError

    with pytest.raises(ModelportError, match="invalid setting in the environment: STORAGE_CONFIG") as edge:
        build_settings({}, {"STORAGE_CONFIG": text})
    assert SECRET not in str(edge.value)


# --- S3 Transfer Acceleration: no emulator serves it; the obstore config built ---------------------


def test_s3_use_accelerate_builds_the_accelerate_endpoint() -> None:
    s = StorageSettings.from_environ({**AWS, "S3_USE_ACCELERATE": "true"})
    config = s3_config(s, "my-models")
    assert config["endpoint"] == "https://my-models.s3-accelerate.amazonaws.com"
    assert config["virtual_hosted_style_request"] is True
    S3Store("my-models", config=config)  # obstore accepts it (no request is made)
    with pytest.raises(StorageError, match="dots"):
        s3_config(s, "my.models")
    # A custom endpoint (MinIO, Ceph) has no accelerate mode: the endpoint wins.
    custom = StorageSettings.from_environ(
        {**AWS, "S3_USE_ACCELERATE": "true", "AWS_ENDPOINT_URL": "http://m:9000"}
    )
    assert s3_config(custom, "my-models")["endpoint"] == "http://m:9000"
    assert s3_config(StorageSettings.from_environ(AWS), "my-models").get("endpoint") is None


# --- KServe's Azure variables against Azurite ---------------------------------------------------


@pytest.fixture(scope="module")
def azure_model(azurite: str) -> str:
    azure_create_container(azurite, "kserve-azure")
    store = AzureStore(
        "kserve-azure",
        account_name=AZ_ACCOUNT,
        account_key=AZ_KEY,
        endpoint=azurite,
        client_options={"allow_http": True},
    )
    import obstore

    for rel, body in MODEL.items():
        obstore.put(store, f"models/iris/{rel}", body)
    return azurite


@pytest.mark.slow
@pytest.mark.parametrize(
    "uri",
    ["az://kserve-azure/models/iris", f"https://{AZ_ACCOUNT}.blob.core.windows.net/kserve-azure/models/iris"],
)
def test_kserve_azure_account_variables_fetch_from_azurite(
    azure_model: str, uri: str, tmp_path: Path
) -> None:
    # The names KServe's credential builder injects from an Azure secret (pkg/credentials/azure).
    env = {
        "AZURE_ACCOUNT_NAME": AZ_ACCOUNT,
        "AZURE_SERVICE_URL": azure_model,
        "AZURE_STORAGE_ACCESS_KEY": AZ_KEY,
    }
    done = run_cli("fetch", uri, str(tmp_path / "m"), env=env)
    assert done.returncode == 0, done.stderr
    assert tree(tmp_path / "m") == MODEL
    assert AZ_KEY not in done.stderr + done.stdout


@pytest.mark.slow
def test_wrong_azure_key_is_refused_without_showing_it(azure_model: str, tmp_path: Path) -> None:
    wrong = "V3Jvbmcga2V5IGZvciB0aGUgdGVzdA=="
    env = {
        "AZURE_ACCOUNT_NAME": AZ_ACCOUNT,
        "AZURE_SERVICE_URL": azure_model,
        "AZURE_STORAGE_ACCESS_KEY": wrong,
    }
    done = run_cli("fetch", "az://kserve-azure/models/iris", str(tmp_path / "m"), env=env)
    assert done.returncode != 0
    assert "kserve-azure" in done.stderr and wrong not in done.stderr and "Traceback" not in done.stderr


def test_azure_service_principal_and_token_settings() -> None:
    # No AAD here: the obstore config built from KServe's names (legacy AZ_* first, as KServe does).
    legacy = {
        "AZURE_ACCOUNT_NAME": "acct",
        "AZ_CLIENT_ID": "client",
        "AZ_CLIENT_SECRET": SECRET,
        "AZ_TENANT_ID": "tenant",
        "AZURE_CLIENT_ID": "ignored",
    }
    s = StorageSettings.from_environ(legacy)
    account, container, path, config = store_args("az://models/iris", s)
    assert (account, container, path) == ("acct", "models", "iris")
    assert config == {
        "account_name": "acct",
        "client_id": "client",
        "client_secret": SECRET,
        "tenant_id": "tenant",
    }
    AzureStore(container, config=config)  # obstore accepts it (no request is made)
    assert SECRET not in repr(s)

    token = StorageSettings.from_environ(
        {"AZURE_ACCESS_TOKEN": SECRET, "AZURE_SERVICE_URL": "https://a.example"}
    )
    _, _, _, config = store_args("https://acct.blob.core.windows.net/models/iris", token)
    assert config == {"account_name": "acct", "endpoint": "https://a.example", "token": SECRET}
    assert SECRET not in repr(token) and token.secrets() == [SECRET]
