"""The MLflow registry and tracking server: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, ``models:/NAME/latest``,
``runs:/RUN_ID/path`` and ``mlflow-artifacts:/...``, resolved through the REST API (no mlflow import).

Registry URIs resolve to the artifact store's own URI (fetched by that back-end) or to the server's artifact proxy.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from modelport.errors import StorageError
from modelport.storage.config import StorageSettings
from modelport.storage.http import open_url, stream_url, with_retries
from modelport.storage.source import Listing, RemoteFile, redact, safe_relpath

API = "/api/2.0/mlflow"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"


def _headers(settings: StorageSettings) -> dict[str, str]:
    if settings.mlflow_tracking_token:
        return {"Authorization": f"Bearer {settings.mlflow_tracking_token}"}
    if settings.mlflow_tracking_username and settings.mlflow_tracking_password:
        raw = f"{settings.mlflow_tracking_username}:{settings.mlflow_tracking_password}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    return {}


def _tracking_base(settings: StorageSettings, uri: str) -> str:
    base = settings.mlflow_tracking_uri
    if not base or not base.startswith(("http://", "https://")):
        raise StorageError(
            f"{uri} needs an MLflow tracking server: set MLFLOW_TRACKING_URI to its http(s) address"
        )
    return base.rstrip("/")


def call_api(settings: StorageSettings, uri: str, endpoint: str, params: dict[str, str]) -> dict[str, Any]:
    """GET one REST endpoint, retrying transient failures; errors name the URI being resolved."""
    url = f"{_tracking_base(settings, uri)}{API}/{endpoint}?{urlencode(params)}"

    def once() -> dict[str, Any]:
        with open_url(url, settings, headers=_headers(settings), verify=settings.mlflow_verify_ssl) as resp:
            try:
                reply = json.loads(resp.read().decode("utf-8") or "{}")
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise StorageError(f"{redact(url)} did not answer with JSON") from exc
        if not isinstance(reply, dict):
            raise StorageError(f"{redact(url)} did not answer with a JSON object")
        return reply

    try:
        return with_retries(once, settings)
    except StorageError as exc:
        raise StorageError(f"cannot resolve {uri} through the MLflow tracking server: {exc.message}") from exc


def _latest_version(settings: StorageSettings, uri: str, name: str) -> str:
    reply = call_api(
        settings, uri, "model-versions/search", {"filter": f"name='{name}'", "max_results": "1000"}
    )
    versions = [int(v["version"]) for v in reply.get("model_versions", [])]
    if not versions:
        raise StorageError(f"registered model {name!r} has no versions ({uri})")
    return str(max(versions))


def _resolve_models(uri: str, settings: StorageSettings) -> str:
    body = uri[len("models:") :].lstrip("/")
    if body.startswith("m-") and "/" not in body and "@" not in body:
        reply = call_api(settings, uri, f"logged-models/{quote(body)}", {})
        return str(reply["model"]["info"]["artifact_uri"])
    if "@" in body:
        name, _, alias = body.rpartition("@")
        version = str(
            call_api(settings, uri, "registered-models/alias", {"name": name, "alias": alias})[
                "model_version"
            ]["version"]
        )
    else:
        name, _, version = body.rpartition("/")
        if not name or not version:
            raise StorageError(
                f"malformed model URI {uri}: expected models:/NAME/VERSION or models:/NAME@ALIAS"
            )
        if version.lower() == "latest":
            version = _latest_version(settings, uri, name)
        elif not version.isdigit():
            reply = call_api(
                settings, uri, "registered-models/get-latest-versions", {"name": name, "stages": version}
            )
            found = reply.get("model_versions") or []
            if not found:
                raise StorageError(f"registered model {name!r} has no version in stage {version!r} ({uri})")
            version = str(found[0]["version"])
    reply = call_api(settings, uri, "model-versions/get-download-uri", {"name": name, "version": version})
    return str(reply["artifact_uri"])


def _resolve_runs(uri: str, settings: StorageSettings) -> str:
    body = uri[len("runs:") :].lstrip("/")
    run_id, _, path = body.partition("/")
    if not run_id:
        raise StorageError(f"malformed run URI {uri}: expected runs:/RUN_ID/path")
    info = call_api(settings, uri, "runs/get", {"run_id": run_id})["run"]["info"]
    base = str(info["artifact_uri"]).rstrip("/")
    return f"{base}/{path}" if path else base


def resolve(uri: str, settings: StorageSettings) -> str:
    """Follow models:/ and runs:/ indirections to a URI a storage back-end can fetch."""
    for _ in range(8):
        try:
            if uri.startswith("models:"):
                uri = _resolve_models(uri, settings)
            elif uri.startswith("runs:"):
                uri = _resolve_runs(uri, settings)
            else:
                return uri
        except (KeyError, TypeError, ValueError) as exc:
            raise StorageError(
                f"the MLflow tracking server answered {redact(uri)} with an unexpected reply (missing {exc})"
            ) from exc
    raise StorageError(f"too many registry indirections resolving {uri}")


class MlflowArtifactsSource:
    """Files under an ``mlflow-artifacts:`` path, through the tracking server's artifact proxy."""

    supports_ranges = False

    def __init__(self, uri: str, settings: StorageSettings) -> None:
        self.uri = uri
        self.settings = settings
        parts = urlsplit(uri)
        if parts.netloc:
            tracking = urlsplit(_tracking_base(settings, uri)) if settings.mlflow_tracking_uri else None
            scheme = tracking.scheme if tracking else "http"
            self.base = f"{scheme}://{parts.netloc}"
        else:
            self.base = _tracking_base(settings, uri)
        self.path = parts.path.strip("/")

    def _list_dir(self, path: str) -> list[dict[str, Any]]:
        url = f"{self.base}{ARTIFACTS_API}?{urlencode({'path': path})}"

        def once() -> list[dict[str, Any]]:
            with open_url(
                url, self.settings, headers=_headers(self.settings), verify=self.settings.mlflow_verify_ssl
            ) as r:
                return list(json.loads(r.read().decode("utf-8") or "{}").get("files", []))

        return with_retries(once, self.settings)

    def list(self) -> Listing:
        files: list[RemoteFile] = []
        pending = [""]
        while pending:
            sub = pending.pop()
            for entry in self._list_dir("/".join(p for p in (self.path, sub) if p)):
                rel = safe_relpath("/".join(p for p in (sub, entry["path"].rsplit("/", 1)[-1]) if p))
                if entry.get("is_dir"):
                    pending.append(rel)
                else:
                    key = f"{self.path}/{rel}" if self.path else rel
                    # No size reported means unknown (downloaded and counted), not empty.
                    size = entry.get("file_size")
                    files.append(RemoteFile(rel=rel, key=key, size=int(size) if size is not None else None))
        if not files and self.path:
            # Not a folder: maybe one file. Its size is unknown until the download ends.
            files.append(RemoteFile(rel=safe_relpath(self.path.rsplit("/", 1)[-1]), key=self.path, size=None))
        if not files:
            raise StorageError(f"nothing found at {redact(self.uri)}")
        return Listing(uri=self.uri, files=tuple(sorted(files, key=lambda f: f.rel)))

    def read(self, file: RemoteFile, start: int, end: int | None) -> Iterator[bytes]:
        url = f"{self.base}{ARTIFACTS_API}/{quote(file.key)}"
        return stream_url(
            url,
            self.settings,
            start,
            end,
            headers=_headers(self.settings),
            verify=self.settings.mlflow_verify_ssl,
        )


def open_source(uri: str, settings: StorageSettings) -> Any:
    """Resolve registry URIs, then hand the result to its own back-end (or the artifact proxy)."""
    resolved = resolve(uri, settings)
    if resolved.startswith("mlflow-artifacts:"):
        return MlflowArtifactsSource(resolved, settings)
    from modelport.storage.registry import open_source as open_any

    return open_any(resolved, settings)
