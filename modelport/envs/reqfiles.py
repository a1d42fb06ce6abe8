"""Requirement files read as pip reads them (pip-requirements-parser, pip's own parsing code).

Continuations, ``--hash``, ``-r``/``-c`` relative to the including file, markers, extras, URLs, VCS,
local paths, index options, comments, BOMs and CRLF. What each requirement means stays with
``packaging``; a line nobody can read is an error naming its file and line, never a traceback.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pip_requirements_parser as pipreq
from packaging.requirements import InvalidRequirement, Requirement

from modelport.errors import EnvironmentError_

log = logging.getLogger("modelport.envs")
_MAX_DEPTH = 10
_ARCHIVES = (".whl", ".tar.gz", ".zip", ".tgz")


@dataclass
class ParsedRequirements:
    """What a set of requirement lines asks for, with the files it read."""

    # Named requirements (PEP 508, or a URL/VCS/wheel whose name is known): these are diffed.
    requirements: list[Requirement] = field(default_factory=list)
    # Where each requirement came from ("requirements.txt:12"), same order.
    origins: list[str] = field(default_factory=list)
    constraints: list[Requirement] = field(default_factory=list)
    # Local folders and URLs without a name: installed, never diffed.
    unnamed: list[str] = field(default_factory=list)
    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    # uv pip install arguments, for lines given inline (python_env.yaml, conda.yaml's pip section).
    install_args: list[str] = field(default_factory=list)

    def index_args(self) -> list[str]:
        """The index options the files carry, as uv flags (uv reads them from -r files too; inline
        lines have no other way in, and relative find-links are made absolute here)."""
        args: list[str] = []
        if self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        return args


def parse_file(path: Path, parsed: ParsedRequirements, hasher: Any, constraint: bool = False) -> None:
    """Read one requirements file (and what it includes) into `parsed`; `hasher` sees every byte read."""
    _parse(path, path.name, parsed, hasher, constraint, depth=0, seen=set())


def parse_lines(lines: list[str], base: Path, origin: str, parsed: ParsedRequirements, hasher: Any) -> None:
    """Read requirement lines given one per item (python_env.yaml dependencies, a conda pip section).

    Relative includes and paths are relative to `base` (the model folder), as MLflow writes them.
    """
    with tempfile.TemporaryDirectory(prefix="modelport-reqs-") as tmp:
        # The parser only reads files; one line per item keeps line numbers = item numbers.
        text = "\n".join(line.replace("\n", " ") for line in lines) + "\n"
        hasher.update(text.encode())
        path = Path(tmp) / "inline.txt"
        path.write_text(text, encoding="utf-8")
        items = list(_items(path, origin))
    for item in items:
        number = item.line_number or 0
        if isinstance(item, pipreq.OptionLine):
            _option(item.options, base, origin, parsed, hasher, 0, set(), inline=True)
        elif isinstance(item, pipreq.InstallRequirement):
            _requirement(item, base, f"{origin} item {number}", parsed, hasher, inline=True)


def _items(path: Path, origin: str, constraint: bool = False) -> list[Any]:
    try:
        items = list(pipreq.RequirementsFile.parse(filename=str(path), is_constraint=constraint))
    except pipreq.InstallationError as exc:
        raise EnvironmentError_(f"cannot read {origin}: {exc}".replace("|n", ": ")) from exc
    for item in items:
        if isinstance(item, pipreq.InvalidRequirementLine):
            where = "item" if origin.endswith(("dependencies", "pip section")) else "line"
            message = " ".join(str(item.error_message).split()).removeprefix("Invalid requirement: : ")
            raise EnvironmentError_(
                f"{origin}, {where} {item.line_number}: cannot understand {item.line.strip()!r}: {message}"
            )
    return items


def _parse(
    path: Path,
    origin: str,
    parsed: ParsedRequirements,
    hasher: Any,
    constraint: bool,
    depth: int,
    seen: set[Path],
) -> None:
    if depth > _MAX_DEPTH:
        raise EnvironmentError_(f"requirement files include each other too deeply at {path}")
    real = path.resolve()
    if real in seen:
        return  # pip would loop forever; an include cycle adds nothing new
    seen = seen | {real}
    try:
        hasher.update(path.read_bytes())
    except OSError as exc:
        raise EnvironmentError_(f"the model's environment names {path}, which cannot be read: {exc}") from exc
    for item in _items(path, origin, constraint):
        where = f"{origin}:{item.line_number}"
        if isinstance(item, pipreq.OptionLine):
            _option(item.options, path.parent, where, parsed, hasher, depth, seen)
        elif isinstance(item, pipreq.InstallRequirement):
            if constraint:
                if item.req is not None:
                    parsed.constraints.append(Requirement(str(item.req)))
                continue
            _requirement(item, path.parent, where, parsed, hasher)


def _option(
    options: dict[str, Any],
    base: Path,
    where: str,
    parsed: ParsedRequirements,
    hasher: Any,
    depth: int,
    seen: set[Path],
    inline: bool = False,
) -> None:
    for key, value in options.items():
        if key in ("requirements", "constraints"):
            for name in value:
                if "://" in name:
                    raise EnvironmentError_(f"{where}: includes by URL are not supported ({name})")
                # normpath, not resolve(): a modelcar's folder is a link into /proc/<pid>/root,
                # whose realpath names a folder of this container's own root.
                target = Path(os.path.normpath(base / name))
                if inline:
                    parsed.install_args += ["-r" if key == "requirements" else "-c", str(target)]
                _parse(target, name, parsed, hasher, key == "constraints", depth + 1, seen)
        elif key == "index_url":
            parsed.index_url = value
        elif key == "extra_index_urls":
            parsed.extra_index_urls += [v for v in value if v not in parsed.extra_index_urls]
        elif key == "find_links":
            for link in value:
                local = base / link
                resolved = str(local.resolve()) if "://" not in link and local.exists() else link
                if resolved not in parsed.find_links:
                    parsed.find_links.append(resolved)
        elif inline and key == "pre" and value:
            parsed.install_args.append("--prerelease=allow")
        else:
            # pip knows it; uv reads it from a -r file where it has an equivalent. Inline, say so.
            if inline:
                log.warning("%s: option %s is not passed to uv", where, key)


def _requirement(
    item: Any, base: Path, where: str, parsed: ParsedRequirements, hasher: Any, inline: bool = False
) -> None:
    raw = (item.line or "").strip()
    if item.is_editable:
        raw = re.sub(r"^(-e|--editable)(\s+|=)?", "", raw)
    token = raw.split()[0] if raw else ""
    local = base / token.removeprefix("file://")
    if token.endswith(_ARCHIVES) and local.is_file():
        # A wheel shipped with the model (mlflow's add_libraries_to_model) changes the env's contents.
        hasher.update(hashlib.sha256(local.read_bytes()).digest())
    if item.req is not None and item.req.name:
        try:
            req = Requirement(str(item.req))
            if item.marker is not None and req.marker is None:
                # The parser keeps the marker beside the requirement; packaging wants it inside.
                req = Requirement(f"{item.req}; {item.marker}")
        except InvalidRequirement as exc:  # the parser accepted it; packaging should too
            raise EnvironmentError_(f"{where}: cannot understand {raw!r}: {exc}") from exc
        parsed.requirements.append(req)
        parsed.origins.append(where)
        if inline:
            parsed.install_args += (
                ["-e", token] if item.is_editable else [_install_form(item, req, token, local)]
            )
        return
    parsed.unnamed.append(token)
    if inline:
        parsed.install_args += ["-e", token] if item.is_editable else [token]


def _install_form(item: Any, req: Requirement, token: str, local: Path) -> str:
    # A named archive, VCS or URL line ("wheels/x-1.0-py3-none-any.whl", "git+https://...#egg=x")
    # is installed from where it points, not by its name from the index.
    if item.link is not None and not req.url:
        return str(local.resolve()) if local.exists() else token
    return str(req)
