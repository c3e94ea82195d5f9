"""Storage hooks ("sinks"): where accepted batches go.

A sink is any callable taking one :class:`~ingest_mw.batch.Batch`, plain or
``async``; a built-in sink is also closeable. It must raise if the batch was
not stored: the client then gets a 500 and is never told 202.
"""

from __future__ import annotations

from .base import Sink, as_async, as_sync, close_async, close_sync
from .jsonl import JSONLinesSink
from .memory import JSONEvents, JSONMemorySink, MemorySink
from .sqlite import SQLiteSink
from .url import sink_from_url

__all__ = [
    "JSONEvents",
    "JSONLinesSink",
    "JSONMemorySink",
    "MemorySink",
    "SQLiteSink",
    "Sink",
    "as_async",
    "as_sync",
    "close_async",
    "close_sync",
    "sink_from_url",
]
