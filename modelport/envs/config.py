"""Environment settings: which policy picks the worker's interpreter, and how to build one.

Read once at the CLI edge (flags, ``MODELPORT_*``, the package-index variables users already set).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POLICIES = ("auto", "local", "uv", "conda", "tarball", "path")
PYTHON_DOWNLOADS = ("never", "automatic", "manual")
# What a model leaves unpinned resolves as of its creation (MLmodel's utc_time_created), or today.
RESOLVE_AS_OF = ("created", "now")

# Variables passed on to uv and to the interpreters we probe; anything else of the
# server's environment (credentials for storage, MODELPORT_*) stays out of them.
_PASSED_PREFIXES = ("UV_", "SSL_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC")
_PASSED_NAMES = {
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "SOURCE_DATE_EPOCH",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "PYENV_ROOT",
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
    "XDG_CONFIG_HOME",
}


@dataclass(frozen=True)
class EnvSettings:
    # auto | local | uv | conda | tarball | tarball:URI | path:DIR
    policy: str = "auto"
    strict: bool = False
    allow_python_mismatch: bool = False
    # Package indexes, already resolved from UV_* / PIP_* (UV_* wins, as uv itself would).
    # Index URLs may carry credentials (https://user:token@host): kept out of repr and logs.
    index_url: str | None = field(default=None, repr=False)
    extra_index_urls: tuple[str, ...] = field(default=(), repr=False)
    find_links: tuple[str, ...] = ()
    # Folders holding base interpreters as <dir>/<version>/bin/python (pyenv's layout).
    python_dirs: tuple[Path, ...] = ()
    # Snapshot of the variables handed to uv and probed interpreters (proxies, uv's cache, certs).
    process_environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Build only from the wheelhouse (find_links) and uv's cache; never reach an index.
    offline: bool = False
    # May uv download a Python the machine lacks? (UV_PYTHON_DOWNLOADS; "never" in the image.)
    python_downloads: str = "automatic"
    # "created": uv's --exclude-newer at the model's creation time; "now": the index as it is today.
    resolve_as_of: str = "created"

    @property
    def policy_kind(self) -> str:
        return self.policy.split(":", 1)[0]

    @property
    def policy_arg(self) -> str | None:
        kind, _, arg = self.policy.partition(":")
        return arg or None

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any], environ: Mapping[str, str]) -> EnvSettings:
        policy = flags.get("env") or environ.get("MODELPORT_ENV") or cls.policy
        strict = bool(flags.get("strict_env")) or _truthy(environ.get("MODELPORT_STRICT_ENV"))
        allow = bool(flags.get("allow_python_mismatch")) or _truthy(
            environ.get("MODELPORT_ALLOW_PYTHON_MISMATCH")
        )
        index = _first(environ, "UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL")
        extra = _split(_first(environ, "UV_INDEX", "UV_EXTRA_INDEX_URL", "PIP_EXTRA_INDEX_URL"))
        links = flags.get("find_links") or _first(environ, "UV_FIND_LINKS", "PIP_FIND_LINKS")
        if environ.get("MODELPORT_PYTHON_DIRS"):
            dirs = tuple(Path(p) for p in environ["MODELPORT_PYTHON_DIRS"].split(":") if p)
        else:
            root = environ.get("PYENV_ROOT") or str(Path(environ.get("HOME", "/root")) / ".pyenv")
            dirs = (Path(root) / "versions",)
        passed = {k: v for k, v in environ.items() if k in _PASSED_NAMES or k.startswith(_PASSED_PREFIXES)}
        offline = bool(flags.get("offline")) or _truthy(environ.get("MODELPORT_OFFLINE"))
        downloads = (
            flags.get("python_downloads")
            or environ.get("MODELPORT_PYTHON_DOWNLOADS")
            or environ.get("UV_PYTHON_DOWNLOADS")
            or cls.python_downloads
        )
        if downloads not in PYTHON_DOWNLOADS:
            raise ValueError(f"python downloads {downloads!r}: expected never, automatic or manual")
        as_of = flags.get("resolve_as_of") or environ.get("MODELPORT_RESOLVE_AS_OF") or cls.resolve_as_of
        if as_of not in RESOLVE_AS_OF:
            raise ValueError(f"resolve as of {as_of!r}: expected created or now")
        return cls(
            policy=policy,
            strict=strict,
            allow_python_mismatch=allow,
            index_url=index,
            extra_index_urls=extra,
            find_links=_split(links),
            python_dirs=dirs,
            process_environ=passed,
            offline=offline,
            python_downloads=downloads,
            resolve_as_of=as_of,
        )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _first(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        if environ.get(name):
            return environ[name]
    return None


def _split(value: str | None) -> tuple[str, ...]:
    # pip separates list values with whitespace, uv with commas or whitespace.
    return tuple(p for p in re.split(r"[\s,]+", value or "") if p)


def redact(text: str) -> str:
    """Hide credentials in index URLs (https://user:token@host -> https://***@host)."""
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)
