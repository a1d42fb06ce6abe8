"""The HTTP request and response the protocol adapters read and return."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelport.dataplane import DataPlane

JSON = b"application/json"


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class HttpResponse:
    status: int
    body: bytes
    content_type: bytes = JSON
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["DataPlane", HttpRequest, dict[str, Any]], Awaitable[HttpResponse]]
