"""Validate an InferenceService: a small schema of the fields doctor reads, or a CRD's own schema.

A subset of OpenAPI v3 as the API server applies it (type, required, enum, properties, items,
additionalProperties, int-or-string, preserve-unknown-fields; unknown fields refused as kubectl's
strict field validation does). No jsonschema dependency at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Schema = Mapping[str, Any]

_STRING = {"type": "string"}
_QUANTITIES = {"type": "object", "additionalProperties": {"x-kubernetes-int-or-string": True}}
_RESOURCES = {"type": "object", "properties": {"requests": _QUANTITIES, "limits": _QUANTITIES}}
_OPEN = {"x-kubernetes-preserve-unknown-fields": True}

# The fields of an InferenceService doctor reads, typed as in KServe's CRD; everything else is open.
ISVC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "apiVersion": {"type": "string", "enum": ["serving.kserve.io/v1beta1"]},
        "kind": {"type": "string", "enum": ["InferenceService"]},
        "metadata": {
            **_OPEN,
            "type": "object",
            "required": ["name"],
            "properties": {"name": _STRING, "namespace": _STRING},
        },
        "spec": {
            **_OPEN,
            "type": "object",
            "required": ["predictor"],
            "properties": {
                "predictor": {
                    **_OPEN,
                    "type": "object",
                    "properties": {
                        "storageContainerName": _STRING,
                        "storageUris": {"type": "array", "items": _OPEN},
                        "model": {
                            **_OPEN,
                            "type": "object",
                            "required": ["modelFormat"],
                            "properties": {
                                "modelFormat": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {"name": _STRING, "version": _STRING},
                                },
                                "runtime": _STRING,
                                "protocolVersion": _STRING,
                                "storageUri": _STRING,
                                "resources": {**_OPEN, **_RESOURCES},
                            },
                        },
                        "resources": {**_OPEN, **_RESOURCES},
                    },
                }
            },
        },
    },
}


def validate(doc: Any, schema: Schema, path: str = "") -> list[str]:
    """Every way ``doc`` breaks ``schema``, as "path: problem" lines."""
    where = path or "(root)"
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(doc, (int, str)) and not isinstance(doc, bool)
        return [] if ok else [f"{where}: should be an integer or a string, found {_kind(doc)}"]
    wanted = schema.get("type")
    if wanted and not _is(doc, wanted):
        return [f"{where}: should be {'an' if wanted[0] in 'aeiou' else 'a'} {wanted}, found {_kind(doc)}"]
    errors: list[str] = []
    if "enum" in schema and doc not in schema["enum"]:
        errors.append(f"{where}: {doc!r} is not one of {', '.join(map(repr, schema['enum']))}")
    if isinstance(doc, dict):
        for key in schema.get("required") or []:
            if key not in doc:
                errors.append(f"{where}: required field {key!r} is missing")
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, value in doc.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in props:
                errors += validate(value, props[key], sub)
            elif isinstance(extra, Mapping):
                errors += validate(value, extra, sub)
            elif props and not schema.get("x-kubernetes-preserve-unknown-fields") and extra is not True:
                errors.append(f"{sub}: unknown field")
    if isinstance(doc, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(doc):
            errors += validate(item, schema["items"], f"{path}[{i}]")
    return errors


def _is(doc: Any, wanted: str) -> bool:
    if wanted == "object":
        return isinstance(doc, dict)
    if wanted == "array":
        return isinstance(doc, list)
    if wanted == "string":
        return isinstance(doc, str)
    if wanted == "boolean":
        return isinstance(doc, bool)
    if wanted == "integer":
        return isinstance(doc, int) and not isinstance(doc, bool)
    if wanted == "number":
        return isinstance(doc, (int, float)) and not isinstance(doc, bool)
    return True


def _kind(doc: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer"}.get(
        type(doc), type(doc).__name__
    )


def crd_schema(crd: Mapping[str, Any], api_version: str) -> Schema | None:
    """The openAPIV3Schema of the CRD's version that ``api_version`` names (group/version)."""
    version = api_version.rsplit("/", 1)[-1]
    for entry in (crd.get("spec") or {}).get("versions") or []:
        if entry.get("name") == version:
            schema: Schema | None = ((entry.get("schema") or {}).get("openAPIV3Schema")) or None
            return schema
    return None


def validate_against_crd(doc: Mapping[str, Any], crd: Mapping[str, Any]) -> list[str]:
    schema = crd_schema(crd, str(doc.get("apiVersion", "")))
    if schema is None:
        return [f"the CRD has no version {doc.get('apiVersion')!r}"]
    # The API server owns metadata (ObjectMeta's schema is not in the CRD) and status.
    body = {k: v for k, v in doc.items() if k not in ("metadata", "status")}
    return validate(body, schema)
