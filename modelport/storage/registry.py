"""Which back-end fetches a URI: a table of lazy import strings keyed by scheme (uvicorn's habit).

A back-end module is imported only when a URI needs it, so obstore never loads for a local path.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from modelport.errors import StorageError
from modelport.storage.config import StorageSettings
from modelport.storage.source import Source, redact

BACKENDS: dict[str, str] = {
    "": "modelport.storage.local:open_source",
    "file": "modelport.storage.local:open_source",
    "pvc": "modelport.storage.local:open_source",
    "s3": "modelport.storage.s3:open_source",
    "s3a": "modelport.storage.s3:open_source",
    "gs": "modelport.storage.gcs:open_source",
    "az": "modelport.storage.azure:open_source",
    "azure": "modelport.storage.azure:open_source",
    "abfs": "modelport.storage.azure:open_source",
    "abfss": "modelport.storage.azure:open_source",
    "http": "modelport.storage.http:open_source",
    "https": "modelport.storage.http:open_source",
    "models": "modelport.storage.mlflow:open_source",
    "runs": "modelport.storage.mlflow:open_source",
    "mlflow-artifacts": "modelport.storage.mlflow:open_source",
}

LOCAL_SCHEMES = frozenset({"", "file", "pvc"})
AZURE_HOST_SUFFIXES = (".blob.core.windows.net", ".dfs.core.windows.net")


def scheme_of(uri: str) -> str:
    """The registry key for ``uri``: its scheme, with Azure's https addresses sent to the Azure back-end."""
    if "://" not in uri and not uri.startswith(("models:", "runs:", "mlflow-artifacts:")):
        return ""  # a plain path, even one with a colon in it
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("http", "https"):
        if (urlsplit(uri).hostname or "").lower().endswith(AZURE_HOST_SUFFIXES):
            return "azure"
    return scheme


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def open_source(uri: str, settings: StorageSettings) -> Source:
    scheme = scheme_of(uri)
    target = BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(sorted(s + "://" for s in BACKENDS if s))
        raise StorageError(f"unsupported model URI scheme {scheme!r} in {redact(uri)}; known: {known}")
    source: Source = _load(target)(uri, settings)
    return source
