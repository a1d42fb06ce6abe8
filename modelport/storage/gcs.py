"""Google Cloud Storage: ``gs://BUCKET/prefix``.

Credentials from GOOGLE_APPLICATION_CREDENTIALS, else the metadata server (workload identity).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from obstore.store import GCSStore

from modelport.errors import StorageError
from modelport.storage.config import StorageSettings
from modelport.storage.objectstore import ObjectStoreSource, client_options, retry_config
from modelport.storage.source import redact


def open_source(uri: str, settings: StorageSettings) -> ObjectStoreSource:
    parts = urlsplit(uri)
    if not parts.netloc:
        raise StorageError(f"GCS URI has no bucket: {redact(uri)}")
    config: Any = {}  # obstore takes a TypedDict
    allow_http = False
    if settings.gcs_endpoint:
        # An emulator (fake-gcs-server): anonymous, usually plain HTTP.
        endpoint = settings.gcs_endpoint
        if "://" not in endpoint:
            endpoint = "http://" + endpoint
        config["base_url"] = endpoint.rstrip("/")
        config["skip_signature"] = True
        allow_http = endpoint.startswith("http://")
    elif settings.google_application_credentials:
        config["application_credentials"] = settings.google_application_credentials
    store = GCSStore(
        parts.netloc,
        config=config,
        client_options=client_options(settings, allow_http=allow_http),
        retry_config=retry_config(settings),
    )
    return ObjectStoreSource(uri, store, parts.path.lstrip("/"), settings)
