"""Azure Blob Storage and ADLS Gen2: ``az://CONTAINER/path``, ``abfs(s)://CONTAINER@ACCOUNT.dfs.core.windows.net/path``
and ``https://ACCOUNT.blob.core.windows.net/CONTAINER/path``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from obstore.store import AzureStore

from modelport.errors import StorageError
from modelport.storage.config import StorageSettings
from modelport.storage.objectstore import ObjectStoreSource, client_options, retry_config
from modelport.storage.source import redact


def split_uri(uri: str) -> tuple[str | None, str, str]:
    """Return (account or None, container, path) for the three spellings."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        account = (parts.hostname or "").split(".", 1)[0]
        container, _, path = parts.path.lstrip("/").partition("/")
        return account, container, path
    if "@" in parts.netloc:
        container, _, host = parts.netloc.partition("@")
        return host.split(".", 1)[0], container, parts.path.lstrip("/")
    return None, parts.netloc, parts.path.lstrip("/")


def store_args(uri: str, settings: StorageSettings) -> tuple[str, str, str, Any]:
    """(account, container, path, obstore config) for ``uri``."""
    account, container, path = split_uri(uri)
    account = account or settings.azure_account_name
    if not container:
        raise StorageError(f"Azure URI has no container: {redact(uri)}")
    if not account:
        raise StorageError(
            f"no Azure storage account for {redact(uri)}: set AZURE_STORAGE_ACCOUNT_NAME or AZURE_ACCOUNT_NAME"
        )
    return account, container, path, azure_config(account, settings)


def azure_config(account: str, settings: StorageSettings) -> Any:  # obstore takes a TypedDict
    config: Any = {"account_name": account}
    if settings.azure_endpoint:
        config["endpoint"] = settings.azure_endpoint.rstrip("/")
    if settings.azure_account_key:
        config["account_key"] = settings.azure_account_key
    elif settings.azure_sas_token:
        config["sas_key"] = settings.azure_sas_token.lstrip("?")
    elif settings.azure_access_token:
        config["token"] = settings.azure_access_token
    elif settings.azure_client_id and settings.azure_client_secret and settings.azure_tenant_id:
        config["client_id"] = settings.azure_client_id
        config["client_secret"] = settings.azure_client_secret
        config["tenant_id"] = settings.azure_tenant_id
    return config


def open_source(uri: str, settings: StorageSettings) -> ObjectStoreSource:
    _, container, path, config = store_args(uri, settings)
    endpoint = settings.azure_endpoint or ""
    store = AzureStore(
        container,
        config=config,
        client_options=client_options(settings, allow_http=endpoint.startswith("http://")),
        retry_config=retry_config(settings),
    )
    return ObjectStoreSource(uri, store, path, settings)
