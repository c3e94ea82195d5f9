"""Storage hooks ("sinks"): where accepted batches go.

A sink is any callable taking one :class:`~ingest_mw.batch.Batch`, plain or
``async``; a built-in sink is also closeable, and proves it can store now
with ``check()`` (raising :class:`SinkUnavailable`). It must raise if the
batch was not stored: the client is then never told 202 (a 503 to retry
later for a :class:`SinkUnavailable`, a 500 for anything else).
The PostgreSQL and Redis Streams sinks (:mod:`ingest_mw.sinks.postgres`,
:mod:`ingest_mw.sinks.redis_stream`) need their extras and are imported from
their modules.
"""

from __future__ import annotations

from .base import BatchRefused, Sink, SinkUnavailable, StorageFull, as_async, as_sync, close_async, close_sync
from .jsonl import JSONLinesSink
from .memory import JSONEvents, JSONMemorySink, MemorySink
from .sqlite import SQLiteSink
from .url import masked, sink_from_url

__all__ = [
    "BatchRefused",
    "JSONEvents",
    "JSONLinesSink",
    "JSONMemorySink",
    "MemorySink",
    "SQLiteSink",
    "Sink",
    "SinkUnavailable",
    "StorageFull",
    "as_async",
    "as_sync",
    "close_async",
    "close_sync",
    "masked",
    "sink_from_url",
]
