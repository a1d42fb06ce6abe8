"""Amazon S3 and S3-compatible stores (MinIO, Ceph, moto): ``s3://BUCKET/prefix``.

Credentials come from StorageSettings; obstore signs requests and handles IRSA web identity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from obstore.store import S3Store

from modelport.errors import StorageError
from modelport.storage.config import StorageSettings
from modelport.storage.objectstore import ObjectStoreSource, client_options, retry_config
from modelport.storage.source import redact

ACCELERATE_HOST = "s3-accelerate.amazonaws.com"


def s3_config(settings: StorageSettings, bucket: str = "") -> Any:  # obstore takes TypedDicts
    config: dict[str, Any] = {}
    virtual_hosted = settings.aws_virtual_hosted
    if settings.aws_endpoint_url:
        config["endpoint"] = settings.aws_endpoint_url.rstrip("/")
    elif settings.s3_use_accelerate:
        # What botocore's use_accelerate_endpoint does: the bucket's own host on the accelerate domain.
        if "." in bucket:
            raise StorageError(
                f"S3 Transfer Acceleration cannot reach a bucket with dots in its name: {bucket}"
            )
        config["endpoint"] = f"https://{bucket}.{ACCELERATE_HOST}"
        virtual_hosted = True
    config["region"] = settings.aws_region or "us-east-1"
    if settings.aws_anonymous:
        config["skip_signature"] = True
    elif settings.aws_access_key_id and settings.aws_secret_access_key:
        config["access_key_id"] = settings.aws_access_key_id
        config["secret_access_key"] = settings.aws_secret_access_key
        if settings.aws_session_token:
            config["session_token"] = settings.aws_session_token
    elif settings.aws_web_identity_token_file and settings.aws_role_arn:
        config["web_identity_token_file"] = settings.aws_web_identity_token_file
        config["role_arn"] = settings.aws_role_arn
    config["virtual_hosted_style_request"] = virtual_hosted
    return config


def read_ca_bundle(path: str) -> bytes:
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read the CA bundle {path} (AWS_CA_BUNDLE): {exc.strerror}") from exc
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise StorageError(f"the CA bundle {path} (AWS_CA_BUNDLE) holds no PEM certificate")
    return pem


def s3_client_options(settings: StorageSettings) -> Any:  # obstore takes TypedDicts
    endpoint = settings.aws_endpoint_url or ""
    opts = client_options(settings, allow_http=endpoint.startswith("http://"), verify=settings.s3_verify_ssl)
    # Added to the system's roots, not instead of them; unused when verification is off (as in KServe).
    if settings.s3_verify_ssl and settings.aws_ca_bundle:
        opts["root_certificate"] = read_ca_bundle(settings.aws_ca_bundle)
    return opts


def open_source(uri: str, settings: StorageSettings) -> ObjectStoreSource:
    parts = urlsplit(uri)
    if not parts.netloc:
        raise StorageError(f"S3 URI has no bucket: {redact(uri)}")
    store = S3Store(
        parts.netloc,
        config=s3_config(settings, parts.netloc),
        client_options=s3_client_options(settings),
        retry_config=retry_config(settings),
    )
    return ObjectStoreSource(uri, store, parts.path.lstrip("/"), settings)
