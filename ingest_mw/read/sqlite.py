"""Read an SQLite sink's file: read-only connections, and a text index kept beside the table.

Reads never block the sink: in WAL mode a reader sees the last committed
batch while the writer goes on. The free-text filter uses an FTS5 trigram
index (``events_fts``, external content over ``events.data``) where one
exists. The sink does not feed it (a trigger would put the indexing into
every ingest transaction): :meth:`SQLiteReader.index` fills it in short
transactions of its own, from the id after the last one indexed, when a
text search asks. Rows not indexed yet are matched by a scan, so a search
is always complete.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Hashable
from typing import Any

from .query import Query, StoredEvent
from .sql import SQLReader

__all__ = ["SQLiteReader"]

_FTS_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(
    data, content='events', content_rowid='id', tokenize='trigram'
);
CREATE TABLE IF NOT EXISTS events_fts_indexed (last_id INTEGER NOT NULL);
INSERT INTO events_fts_indexed SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM events_fts_indexed);
"""
#: Rows indexed per transaction: a sink's commit waits for the index's write
#: lock that long at most (about 7 ms for typical 250-byte events).
INDEX_CHUNK = 100
#: A search indexes for at most this long before it scans what is left.
INDEX_BUDGET = 0.25
#: The trigram index finds substrings of at least this many characters.
_TRIGRAM = 3


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


class SQLiteReader(SQLReader):
    """Read the ``events`` table of the SQLite file ``path``, as
    :class:`~ingest_mw.sinks.SQLiteSink` writes it.

    ``index=True`` lets the reader create and fill the text index (it then
    needs write access to the file; the ``tail`` command reads only and uses
    the index as far as it goes). Raises ``ValueError`` when ``path`` is
    missing or is not an ingest database.
    """

    def __init__(self, path: str | os.PathLike[str], *, index: bool = False) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise ValueError(f"{self.path}: no such file (nothing stored yet?)")
        self._uri = f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=ro"
        super().__init__()
        try:
            tables = {name for (name,) in self.fetch("SELECT name FROM sqlite_master WHERE type = 'table'", [])}
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{self.path}: not an ingest database ({exc})") from None
        if "events" not in tables:
            raise ValueError(f"{self.path}: not an ingest database (no events table)")
        self._index_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        if index:
            self._writer = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            try:
                self._writer.executescript(_FTS_SCHEMA)
            except sqlite3.OperationalError:  # an SQLite built without FTS5 or trigram: scans only
                self._writer.close()
                self._writer = None

    @classmethod
    def for_sink(cls, sink: Any) -> SQLiteReader:
        """The page's reader of an :class:`~ingest_mw.sinks.SQLiteSink`: it keeps the text index."""
        return cls(sink.path, index=True)

    def connect(self) -> sqlite3.Connection:
        # Used by one thread; closed by whichever closes the reader.
        return sqlite3.connect(self._uri, uri=True, isolation_level=None, check_same_thread=False)

    def json_text(self, field: str) -> str:
        return f"json_extract(data, '$.\"{field}\"')"

    def epoch(self, column: str) -> str:
        return f"CAST(strftime('%s', {column}) AS INTEGER)"

    def contains(self) -> str:
        return "instr(lower(data), ?) > 0"

    def fingerprint(self) -> Hashable:
        # A commit in WAL mode writes the -wal file; a checkpoint writes the
        # database file: either changes a size or a modification time.
        return _stat(self.path), _stat(self.path + "-wal")

    def indexed_up_to(self) -> int:
        """The last id in the text index (0: no index, or nothing indexed)."""
        try:
            rows = self.fetch("SELECT last_id FROM events_fts_indexed", [])
        except sqlite3.OperationalError:  # no index
            return 0
        return int(rows[0][0]) if rows else 0

    def index(self, *, budget: float = INDEX_BUDGET) -> int:
        """Index rows not indexed yet, :data:`INDEX_CHUNK` per transaction,
        for at most ``budget`` seconds; returns the last id indexed."""
        writer = self._writer
        if writer is None:
            return self.indexed_up_to()
        deadline = time.monotonic() + budget
        with self._index_lock:
            while True:
                writer.execute("BEGIN IMMEDIATE")
                try:
                    (last,) = writer.execute("SELECT last_id FROM events_fts_indexed").fetchone()
                    (top,) = writer.execute(
                        "SELECT max(id) FROM (SELECT id FROM events WHERE id > ? ORDER BY id LIMIT ?)",
                        (last, INDEX_CHUNK),
                    ).fetchone()
                    if top is not None:
                        writer.execute(
                            "INSERT INTO events_fts (rowid, data) SELECT id, data FROM events WHERE id > ? AND id <= ?",
                            (last, top),
                        )
                        writer.execute("UPDATE events_fts_indexed SET last_id = ?", (top,))
                        last = top
                except BaseException:
                    writer.execute("ROLLBACK")
                    raise
                writer.execute("COMMIT")
                if top is None or time.monotonic() >= deadline:
                    return int(last)

    def text_condition(self, query: Query) -> tuple[str, list[Any]]:
        text = query.text
        assert text is not None
        indexed = self.indexed_up_to()
        if indexed == 0 or len(text) < _TRIGRAM or (query.after or 0) >= indexed:
            # No index, too short a text for it, or only rows it does not hold yet.
            return super().text_condition(query)
        phrase = '"' + text.replace('"', '""') + '"'
        condition = (
            "(id <= ? AND id IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?))"
            f" OR (id > ? AND {self.contains()})"
        )
        return condition, [indexed, phrase, indexed, text.lower()]

    def search(self, query: Query) -> list[StoredEvent]:
        if query.text is not None and query.after is None and self._writer is not None:
            self.index()  # a search over what is stored; a follower's step reads only new rows
        return super().search(query)

    def close(self) -> None:
        super().close()
        if self._writer is not None:
            with self._index_lock:
                self._writer.close()
