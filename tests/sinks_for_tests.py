"""Storage hooks the tests plug in: async, SQLite-backed, and one that always fails."""

from __future__ import annotations

import asyncio
import sqlite3

from ingest_mw import Batch, MemorySink, SQLiteSink


class AsyncMemorySink(MemorySink):
    """An ``async`` hook: proves the adapters await coroutine sinks."""

    async def __call__(self, batch: Batch) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().__call__(batch)


class SQLiteBackedSink(MemorySink):
    """Writes every batch through the real SQLite sink first, so whatever the
    contract accepts must also be storable, then keeps it for assertions."""

    def __init__(self) -> None:
        super().__init__()
        self.sqlite = SQLiteSink(":memory:")

    def __call__(self, batch: Batch) -> None:
        self.sqlite(batch)
        super().__call__(batch)


class FailingSink:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, batch: Batch) -> None:
        self.calls += 1
        raise RuntimeError("disk full")


SINK_KINDS = {"sync": MemorySink, "async": AsyncMemorySink, "sqlite": SQLiteBackedSink}


class CheckedSQLiteSink(SQLiteSink):
    """The SQLite sink with a readiness check of its own: a fresh connection
    begins a write transaction and rolls it back, so a file or directory made
    read-only, or a database another process holds locked, fails the check
    (the open connection's descriptors would still be writable)."""

    def check(self) -> None:
        probe = sqlite3.connect(self.path, timeout=2.0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
        finally:
            probe.close()
