"""Amazon S3 and S3-compatible stores (MinIO, Ceph, moto): ``s3://BUCKET/prefix``.

Credentials come from StorageSettings; obstore signs requests and handles IRSA web identity.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from obstore.store import S3Store

from modelport.errors import StorageError
from modelport.storage.config import StorageSettings
from modelport.storage.objectstore import ObjectStoreSource, client_options, retry_config
from modelport.storage.source import redact


def s3_config(settings: StorageSettings) -> Any:  # obstore takes TypedDicts; built from settings here
    config: dict[str, Any] = {}
    if settings.aws_endpoint_url:
        config["endpoint"] = settings.aws_endpoint_url.rstrip("/")
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
    config["virtual_hosted_style_request"] = settings.aws_virtual_hosted
    return config


def open_source(uri: str, settings: StorageSettings) -> ObjectStoreSource:
    parts = urlsplit(uri)
    if not parts.netloc:
        raise StorageError(f"S3 URI has no bucket: {redact(uri)}")
    endpoint = settings.aws_endpoint_url or ""
    store = S3Store(
        parts.netloc,
        config=s3_config(settings),
        client_options=client_options(
            settings, allow_http=endpoint.startswith("http://"), verify=settings.s3_verify_ssl
        ),
        retry_config=retry_config(settings),
    )
    return ObjectStoreSource(uri, store, parts.path.lstrip("/"), settings)
