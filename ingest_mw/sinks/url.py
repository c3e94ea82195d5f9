"""Build a built-in sink from a URL, as ``ingest-mw serve --sink`` does.

Every message here names the URL with :func:`masked`: a password it holds
never reaches an error or a log line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..redact import masked
from .disk import MIN_FREE_BYTES

__all__ = ["SCHEMES", "masked", "sink_from_url"]

#: What ``--sink`` takes, for messages and the ``--sink`` help.
SCHEMES = (
    "sqlite:///PATH",
    "jsonl:///PATH",
    "memory://",
    "postgresql://USER:PASSWORD@HOST:PORT/DB?table=events",
    "redis://HOST:PORT/DB?stream=ingest_mw:events",
)


def _path(url: str, scheme: str) -> str:
    # As in SQLAlchemy: "sqlite:///rel.db" is relative, "sqlite:////abs.db" absolute.
    rest = url[len(scheme) + 3 :]
    if not rest.startswith("/") or len(rest) < 2:
        raise ValueError(f"{url!r}: expected {scheme}:///relative/path or {scheme}:////absolute/path")
    return rest[1:]


def _options(url: str, own: dict[str, Callable[[str], Any]]) -> tuple[str, dict[str, Any]]:
    """Split the query options of ours (``own``: name -> converter) off ``url``;
    the rest of the query stays in the URL for the client library."""
    parts = urlsplit(url)
    kept, options = [], {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in own:
            try:
                options[key] = own[key](value)
            except ValueError as exc:
                raise ValueError(f"{masked(url)}: {key}={value!r}: {exc}") from None
        else:
            kept.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), options


def _positive(value: str) -> int:
    if not (value.isascii() and value.isdigit() and int(value) > 0):
        raise ValueError("give a whole number above 0")
    return int(value)


def _name(value: str) -> str:
    if not value:
        raise ValueError("give a non-empty name")
    return value


_MISSING = "this sink needs {} (pip install 'ingest-mw[{}]')"


def sink_from_url(url: str, *, min_free_bytes: int = MIN_FREE_BYTES) -> Any:
    """The built-in sink a URL names:

    * ``sqlite:///events.db`` (relative) or ``sqlite:////var/lib/events.db``;
    * ``jsonl:///events.jsonl``;
    * ``memory://`` or ``memory://?max_events=N`` (a
      :class:`~ingest_mw.sinks.JSONMemorySink`, which keeps the newest 10,000
      events unless told otherwise);
    * ``postgresql://user:password@host:5432/db`` (or ``postgres://``), a libpq
      URI, with ``table=`` (default ``events``) and ``pool_size=`` (default 4)
      taken off its query (extra ``postgres``);
    * ``redis://host:6379/0`` (or ``rediss://``) with ``stream=`` (default
      ``ingest_mw:events``) and ``maxlen=`` (default: no trimming) taken off
      its query (extra ``redis``).

    ``min_free_bytes`` is the file sinks' (see :mod:`ingest_mw.sinks.disk`).
    A wrong URL is a :class:`ValueError` naming it with its password masked.
    """
    scheme = url.partition("://")[0].lower()
    if scheme == "sqlite":
        from .sqlite import SQLiteSink

        return SQLiteSink(_path(url, scheme), min_free_bytes=min_free_bytes)
    if scheme == "jsonl":
        from .jsonl import JSONLinesSink

        return JSONLinesSink(_path(url, scheme), min_free_bytes=min_free_bytes)
    if scheme == "memory":
        from .memory import JSONMemorySink

        query = url.partition("?")[2]
        name, _, value = query.partition("=")
        if not query:
            return JSONMemorySink()
        if name != "max_events" or not (value.isascii() and value.isdigit() and int(value) > 0):
            raise ValueError(f"{url!r}: expected memory:// or memory://?max_events=N (N > 0)")
        return JSONMemorySink(max_events=int(value))
    if scheme in ("postgresql", "postgres"):
        conninfo, options = _options(url, {"table": _name, "pool_size": _positive})
        try:
            from .postgres import PostgresSink
        except ImportError:
            raise ValueError(f"{masked(url)}: {_MISSING.format('psycopg', 'postgres')}") from None
        return PostgresSink(conninfo, **options)
    if scheme in ("redis", "rediss"):
        address, options = _options(url, {"stream": _name, "maxlen": _positive})
        try:
            from .redis_stream import RedisStreamSink
        except ImportError:
            raise ValueError(f"{masked(url)}: {_MISSING.format('redis-py', 'redis')}") from None
        return RedisStreamSink(address, **options)
    shown = masked(url) if "://" in url else repr(url)
    raise ValueError(f"unknown sink URL {shown}: use {', '.join(SCHEMES)}")
