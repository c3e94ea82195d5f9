"""Build a built-in sink from a URL, as ``ingest-mw serve --sink`` does."""

from __future__ import annotations

from typing import Any

__all__ = ["sink_from_url"]


def _path(url: str, scheme: str) -> str:
    # As in SQLAlchemy: "sqlite:///rel.db" is relative, "sqlite:////abs.db" absolute.
    rest = url[len(scheme) + 3 :]
    if not rest.startswith("/") or len(rest) < 2:
        raise ValueError(f"{url!r}: expected {scheme}:///relative/path or {scheme}:////absolute/path")
    return rest[1:]


def sink_from_url(url: str) -> Any:
    """``sqlite:///events.db``, ``jsonl:///events.jsonl``, ``memory://`` or
    ``memory://?max_events=N`` (a :class:`~ingest_mw.sinks.JSONMemorySink`,
    which keeps the newest 10,000 events unless told otherwise)."""
    scheme = url.partition("://")[0].lower()
    if scheme == "sqlite":
        from .sqlite import SQLiteSink

        return SQLiteSink(_path(url, scheme))
    if scheme == "jsonl":
        from .jsonl import JSONLinesSink

        return JSONLinesSink(_path(url, scheme))
    if scheme == "memory":
        from .memory import JSONMemorySink

        query = url.partition("?")[2]
        name, _, value = query.partition("=")
        if not query:
            return JSONMemorySink()
        if name != "max_events" or not (value.isascii() and value.isdigit() and int(value) > 0):
            raise ValueError(f"{url!r}: expected memory:// or memory://?max_events=N (N > 0)")
        return JSONMemorySink(max_events=int(value))
    raise ValueError(f"unknown sink URL {url!r}: use sqlite:///PATH, jsonl:///PATH or memory://")
