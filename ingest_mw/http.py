"""Small HTTP helpers the two adapters share (no rules here: just formats)."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import TypeVar

from .api import Response, Routes

__all__ = [
    "PLAIN_TEXT",
    "exact_paths",
    "for_method",
    "normalize_prefix",
    "not_found",
    "read_only_refusal",
    "status_line",
    "strip_prefix",
]

#: The Content-Type of every plain-text answer (Better Stack's, the middleware's).
PLAIN_TEXT = ("Content-Type", "text/plain; charset=utf-8")

#: What the operator endpoints (health, readiness, metrics) answer a method
#: other than the two they take.
_READ_ONLY_METHODS = ("GET", "HEAD")
_METHOD_NOT_ALLOWED = Response(405, (PLAIN_TEXT, ("Allow", "GET, HEAD")), b"Method Not Allowed\n")


def read_only_refusal(method: str) -> Response | None:
    """The 405 of an endpoint that takes ``GET`` and ``HEAD`` only, for ``method``
    (``None``: one of those two)."""
    return None if method in _READ_ONLY_METHODS else _METHOD_NOT_ALLOWED


def for_method(method: str, response: Response) -> Response:
    """``response`` as the answer to ``method``: without its body for ``HEAD``."""
    return Response(response.status, response.headers, b"", response.close) if method == "HEAD" else response


def not_found(routes: Routes, mount: str, path: str) -> Response:
    """The 404 for ``path``, which no API claims: plain text, in no one API's
    style, naming the routes that exist."""
    return Response(404, (PLAIN_TEXT,), routes.not_found(mount, path).encode("utf-8", "backslashreplace"))


_App = TypeVar("_App")

_STATUS_LINES = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}


def status_line(status: int) -> str:
    return _STATUS_LINES.get(status) or f"{status} Unknown"


def normalize_prefix(prefix: str) -> str:
    """``"ingest/"`` -> ``"/ingest"``; the root mount ``"/"`` -> ``""``."""
    prefix = "/" + prefix.strip("/")
    return "" if prefix == "/" else prefix


def strip_prefix(path: str, prefix: str) -> str | None:
    """``path`` below ``prefix`` (on a segment boundary), or ``None`` if it is elsewhere."""
    if not prefix:
        return path
    if path == prefix or path.startswith(prefix + "/"):
        return path[len(prefix) :]
    return None


def exact_paths(endpoints: Mapping[str, _App]) -> dict[str, _App]:
    """``endpoints`` (``{"/healthz": app}``) checked: every path exact and below the root."""
    for path in endpoints:
        if not isinstance(path, str) or not path.startswith("/") or path == "/":
            raise ValueError(f"endpoint path {path!r}: give an exact path such as '/healthz'")
    return dict(endpoints)
