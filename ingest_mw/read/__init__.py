"""The read side: what the built-in sinks stored, for ``ingest-mw tail`` and the Live Tail page.

:func:`reader_for` gives the :class:`Reader` of a sink object (the page,
inside ``serve``); :func:`reader_from_url` the reader of a ``--sink`` URL
(the ``tail`` command, in a process of its own).
"""

from __future__ import annotations

from typing import Any

from ..sinks.url import _path as sink_path
from ..sinks.url import masked
from .base import Reader, ScanReader
from .query import Query, StoredEvent, parse_since

__all__ = ["Query", "Reader", "ScanReader", "StoredEvent", "parse_since", "reader_for", "reader_from_url"]

#: Sink class (module, name) -> how to build its reader, by module path so a
#: sink whose driver is not installed costs nothing until it is used.
_READERS: dict[tuple[str, str], tuple[str, str]] = {
    ("ingest_mw.sinks.sqlite", "SQLiteSink"): ("ingest_mw.read.sqlite", "SQLiteReader"),
    ("ingest_mw.sinks.jsonl", "JSONLinesSink"): ("ingest_mw.read.jsonl", "JSONLinesReader"),
    ("ingest_mw.sinks.memory", "JSONMemorySink"): ("ingest_mw.read.memory", "MemoryReader"),
    ("ingest_mw.sinks.postgres", "PostgresSink"): ("ingest_mw.read.postgres", "PostgresReader"),
}


def _reader_class(module: str, name: str) -> Any:
    import importlib

    return getattr(importlib.import_module(module), name)


def reader_for(sink: object) -> Reader:
    """The reader of a built-in sink object (see :meth:`Reader.for_sink`); ``ValueError`` for any other."""
    for cls in type(sink).__mro__:
        found = _READERS.get((cls.__module__, cls.__name__))
        if found is not None:
            return _reader_class(*found).for_sink(sink)  # type: ignore[no-any-return]
    raise ValueError(f"no reader for a {type(sink).__name__}: the page reads the built-in sinks only")


def reader_from_url(url: str) -> Reader:
    """The reader of a ``--sink`` URL, reading only; ``ValueError`` with what
    to fix for an unknown URL, a missing file or one that is not the sink's."""
    scheme = url.partition("://")[0].lower()
    if scheme == "sqlite":
        from .sqlite import SQLiteReader

        return SQLiteReader(sink_path(url, scheme))
    if scheme == "jsonl":
        from .jsonl import JSONLinesReader

        return JSONLinesReader(sink_path(url, scheme))
    if scheme in ("postgresql", "postgres"):
        from ..sinks.url import sink_from_url as sink_of

        return reader_for(sink_of(url))  # the sink's own reading of the URL; it connects on first use only
    if scheme == "memory":
        raise ValueError("memory:// lives inside the serve process: browse it on the /ui page (serve --ui-token)")
    if scheme in ("redis", "rediss"):
        raise ValueError(f"{masked(url)}: a Redis stream is read by its consumers (see docs/sinks.md), not by tail")
    # Masked: an unknown URL may still carry a password.
    raise ValueError(f"unknown sink URL {masked(url)!r}: use sqlite:///PATH, jsonl:///PATH or postgresql://...")
