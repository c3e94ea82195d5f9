"""The embedded default sink: an SQLite file in WAL mode, one transaction per batch."""

from __future__ import annotations

import os
import sqlite3
import threading

from ..batch import Batch
from .record import COLUMNS, rows

__all__ = ["SQLiteSink"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    dt TEXT NOT NULL,
    api TEXT NOT NULL,
    source TEXT NOT NULL,
    dataset TEXT,
    service TEXT,
    namespace TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_dt ON events (dt);
"""
_INSERT = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


class SQLiteSink:
    """Store events in the ``events`` table of the SQLite file ``path``.

    One connection guarded by a lock: SQLite takes one writer at a time
    anyway, and this makes the sink safe under concurrent requests from any
    thread. WAL with ``synchronous=NORMAL``: a committed batch survives the
    process being killed; ``synchronous="FULL"`` also survives a power cut.
    The batch is committed before the hook returns, so before the 202.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.executescript(_SCHEMA)

    def __call__(self, batch: Batch) -> None:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_INSERT, rows(batch))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
