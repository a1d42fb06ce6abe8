"""Storage settings: credentials, endpoints and transfer knobs, read from the variables users already set.

Built once at the CLI edge from an environment snapshot; secrets never appear in ``repr``.
"""

from __future__ import annotations

import json
import os.path
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

_MIB = 1024 * 1024

# Fields whose values must never reach a log line, an error message or a repr.
SECRET_FIELDS = frozenset(
    {
        "aws_secret_access_key",
        "aws_session_token",
        "azure_access_token",
        "azure_account_key",
        "azure_client_secret",
        "azure_sas_token",
        "mlflow_tracking_token",
        "mlflow_tracking_password",
    }
)


def _truthy(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _first(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = environ.get(name)
        if value:
            return value
    return None


# KServe's storage initializer copies these keys of an ``s3`` STORAGE_CONFIG into these variables
# (kserve_storage.Storage._update_with_storage_spec), overriding what the pod's env says.
STORAGE_SPEC_S3_KEYS = {
    "endpoint_url": "AWS_ENDPOINT_URL",
    "access_key_id": "AWS_ACCESS_KEY_ID",
    "secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "region": "AWS_DEFAULT_REGION",
    "ca_bundle": "AWS_CA_BUNDLE",
    "verify_ssl": "S3_VERIFY_SSL",
    "anonymous": "awsAnonymousCredential",
}


def _json_object(environ: Mapping[str, str], name: str) -> dict[str, Any]:
    text = environ.get(name, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        # The message gives a position only, never the text: it holds secrets.
        raise ValueError(f"{name} is not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object, not {type(value).__name__}")
    return value


def storage_spec_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables an InferenceService's ``storage:`` key stands for.

    KServe passes the storage secret's entry as STORAGE_CONFIG and the ``storage.parameters`` as
    STORAGE_OVERRIDE_CONFIG (both JSON objects; the second wins key by key). Only ``type: s3``
    carries credentials a fetch uses; KServe itself refuses types other than s3, hdfs and webhdfs,
    and the bucket it already put in the URI.
    """
    spec = {**_json_object(environ, "STORAGE_CONFIG"), **_json_object(environ, "STORAGE_OVERRIDE_CONFIG")}
    if spec.get("type") != "s3":
        return {}
    out: dict[str, str] = {}
    for key, name in STORAGE_SPEC_S3_KEYS.items():
        value = spec.get(key)
        if value is None:
            continue
        out[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def ca_bundle_path(environ: Mapping[str, str]) -> str | None:
    """AWS_CA_BUNDLE, else the cluster-wide bundle KServe mounts from ``caBundleConfigMapName``."""
    if environ.get("AWS_CA_BUNDLE"):
        return environ["AWS_CA_BUNDLE"]
    if environ.get("CA_BUNDLE_CONFIGMAP_NAME"):
        return os.path.join(environ.get("CA_BUNDLE_VOLUME_MOUNT_POINT", ""), "cabundle.crt")
    return None


def parse_connection_string(text: str) -> dict[str, str]:
    """Split an Azure storage connection string (``Key=Value;...``) into its parts."""
    parts: dict[str, str] = {}
    for item in text.split(";"):
        if "=" in item:
            key, _, value = item.partition("=")
            parts[key.strip()] = value.strip()
    return parts


@dataclass(frozen=True, repr=False)
class StorageSettings:
    # S3 (and S3-compatible stores: MinIO, Ceph, moto).
    aws_endpoint_url: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    aws_region: str | None = None
    aws_anonymous: bool = False
    aws_web_identity_token_file: str | None = None
    aws_role_arn: str | None = None
    aws_virtual_hosted: bool = False
    s3_verify_ssl: bool = True
    # A PEM file of CAs to trust on top of the system's (AWS_CA_BUNDLE).
    aws_ca_bundle: str | None = None
    # S3 Transfer Acceleration (BUCKET.s3-accelerate.amazonaws.com); AWS only, no custom endpoint.
    s3_use_accelerate: bool = False
    # Google Cloud Storage.
    google_application_credentials: str | None = None
    gcs_endpoint: str | None = None
    # Azure Blob Storage / ADLS Gen2.
    azure_account_name: str | None = None
    azure_account_key: str | None = None
    azure_client_id: str | None = None
    azure_client_secret: str | None = None
    azure_tenant_id: str | None = None
    azure_sas_token: str | None = None
    # A bearer token for the storage account (AZURE_ACCESS_TOKEN).
    azure_access_token: str | None = None
    azure_endpoint: str | None = None
    # MLflow tracking server and model registry.
    mlflow_tracking_uri: str | None = None
    mlflow_tracking_token: str | None = None
    mlflow_tracking_username: str | None = None
    mlflow_tracking_password: str | None = None
    mlflow_verify_ssl: bool = True
    # Where KServe mounts a PVC named in pvc://NAME/path.
    pvc_root: str = "/mnt/pvc"
    # Transfer knobs.
    concurrency: int = 16
    min_part_size: int = 8 * _MIB
    retries: int = 5
    read_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            shown.append(f"{f.name}={value!r}")
        return f"StorageSettings({', '.join(shown)})"

    __str__ = __repr__

    def secrets(self) -> list[str]:
        """The secret values set, so that error texts can be scrubbed of them."""
        return [v for f in fields(self) if f.name in SECRET_FIELDS and (v := getattr(self, f.name))]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> StorageSettings:
        spec = storage_spec_environ(environ)
        env = {**environ, **spec}
        if "AWS_ENDPOINT_URL" in spec:
            env.pop("AWS_ENDPOINT_URL_S3", None)  # KServe passes STORAGE_CONFIG's endpoint explicitly
        endpoint = _first(env, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        if endpoint is None and env.get("S3_ENDPOINT"):
            # KServe's spelling: host[:port] plus S3_USE_HTTPS.
            host = env["S3_ENDPOINT"]
            if "://" not in host:
                host = ("https://" if _truthy(env.get("S3_USE_HTTPS"), True) else "http://") + host
            endpoint = host
        azure = parse_connection_string(env.get("AZURE_STORAGE_CONNECTION_STRING", ""))
        azure_endpoint = _first(
            env, "AZURE_STORAGE_ENDPOINT", "AZURE_ENDPOINT", "AZURE_SERVICE_URL"
        ) or azure.get("BlobEndpoint")
        d = cls()
        return cls(
            aws_endpoint_url=endpoint,
            aws_access_key_id=_first(env, "AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=_first(env, "AWS_SECRET_ACCESS_KEY"),
            aws_session_token=_first(env, "AWS_SESSION_TOKEN"),
            aws_region=_first(env, "AWS_DEFAULT_REGION", "AWS_REGION"),
            aws_anonymous=_truthy(_first(env, "awsAnonymousCredential", "AWS_SKIP_SIGNATURE"), False),
            aws_web_identity_token_file=_first(env, "AWS_WEB_IDENTITY_TOKEN_FILE"),
            aws_role_arn=_first(env, "AWS_ROLE_ARN"),
            aws_virtual_hosted=_truthy(
                _first(env, "S3_USER_VIRTUAL_BUCKET", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST"), False
            ),
            s3_verify_ssl=_truthy(env.get("S3_VERIFY_SSL"), True),
            aws_ca_bundle=ca_bundle_path(env),
            s3_use_accelerate=_truthy(env.get("S3_USE_ACCELERATE"), False),
            google_application_credentials=_first(env, "GOOGLE_APPLICATION_CREDENTIALS"),
            gcs_endpoint=_first(env, "STORAGE_EMULATOR_HOST", "GCS_ENDPOINT"),
            azure_account_name=_first(
                env, "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT", "AZURE_ACCOUNT_NAME"
            )
            or azure.get("AccountName"),
            azure_account_key=_first(env, "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCESS_KEY")
            or azure.get("AccountKey"),
            # KServe's legacy AZ_* spellings win, as in its storage initializer.
            azure_client_id=_first(env, "AZ_CLIENT_ID", "AZURE_CLIENT_ID"),
            azure_client_secret=_first(env, "AZ_CLIENT_SECRET", "AZURE_CLIENT_SECRET"),
            azure_tenant_id=_first(env, "AZ_TENANT_ID", "AZURE_TENANT_ID"),
            azure_sas_token=_first(env, "AZURE_STORAGE_SAS_TOKEN") or azure.get("SharedAccessSignature"),
            azure_access_token=_first(env, "AZURE_ACCESS_TOKEN"),
            azure_endpoint=azure_endpoint,
            mlflow_tracking_uri=_first(env, "MLFLOW_TRACKING_URI"),
            mlflow_tracking_token=_first(env, "MLFLOW_TRACKING_TOKEN"),
            mlflow_tracking_username=_first(env, "MLFLOW_TRACKING_USERNAME"),
            mlflow_tracking_password=_first(env, "MLFLOW_TRACKING_PASSWORD"),
            mlflow_verify_ssl=not _truthy(env.get("MLFLOW_TRACKING_INSECURE_TLS"), False),
            pvc_root=env.get("MODELPORT_PVC_ROOT") or d.pvc_root,
            concurrency=int(env.get("MODELPORT_STORAGE_CONCURRENCY") or d.concurrency),
            min_part_size=int(env.get("MODELPORT_STORAGE_PART_SIZE") or d.min_part_size),
            retries=int(env.get("MODELPORT_STORAGE_RETRIES") or d.retries),
            read_timeout_s=float(env.get("MODELPORT_STORAGE_READ_TIMEOUT") or d.read_timeout_s),
            connect_timeout_s=float(env.get("MODELPORT_STORAGE_CONNECT_TIMEOUT") or d.connect_timeout_s),
        )
