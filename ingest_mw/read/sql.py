"""Readers over a SQL ``events`` table: the filters of a :class:`Query` as a WHERE clause.

:class:`SQLReader` writes the queries once; a database is a subclass that
says how to run them and spells the few expressions that differ between
dialects (a JSON field as text, a timestamp as Unix seconds, a substring
test). The table is the file sinks' :data:`~ingest_mw.sinks.record.COLUMNS`
plus an increasing ``id``.
"""

from __future__ import annotations

import threading
import weakref
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from ..sinks.record import COLUMNS, iso_utc
from .base import RateCounts, Reader
from .query import LEVEL_FIELDS, Query, StoredEvent

__all__ = ["SQLReader"]

_COLUMNS = f"id, {', '.join(COLUMNS)}"


class SQLReader(Reader):
    """The queries of every SQL reader, run on a connection of the calling
    thread's (each thread reads on its own; :meth:`close` closes them all);
    a subclass says how to open one (:meth:`connect`)."""

    #: The parameter marker of the driver ("?" for sqlite3, "%s" for psycopg).
    param = "?"
    stores_ids = True
    #: The table's name, as the sink was given it.
    table = "events"

    def __init__(self) -> None:
        self._local = threading.local()
        # Every thread's connection, with the thread: for close(), and closed
        # as soon as another is opened once its thread has ended.
        self._connections: list[tuple[weakref.ref[threading.Thread], Any]] = []
        self._connections_lock = threading.Lock()

    @abstractmethod
    def connect(self) -> Any:
        """A new read-only connection (a DB-API one: ``execute``, ``close``) that
        any thread may close."""

    def usable(self, connection: Any) -> bool:
        """Whether this thread's ``connection`` can still run a statement."""
        return True

    def _connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None or not self.usable(connection):
            with self._connections_lock:
                ended = [(thread, kept) for thread, kept in self._connections if not _alive(thread)]
                if connection is not None:
                    ended += [(thread, kept) for thread, kept in self._connections if kept is connection]
                for entry in ended:
                    self._connections.remove(entry)
                connection = self._local.connection = self.connect()
                self._connections.append((weakref.ref(threading.current_thread()), connection))
            _close_all(kept for _, kept in ended)
        return connection

    def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one read-only statement, as a short transaction of its own."""
        return list(self._connection().execute(sql, params).fetchall())

    def close(self) -> None:
        """Close every thread's connection (a thread that reads again opens a new one)."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        self._local = threading.local()
        _close_all(connection for _, connection in connections)

    @abstractmethod
    def json_text(self, field: str) -> str:
        """An expression: the event's top-level ``field`` as text (NULL when absent)."""

    @abstractmethod
    def epoch(self, column: str) -> str:
        """An expression: the time in ``column`` as whole Unix seconds."""

    @abstractmethod
    def contains(self) -> str:
        """A condition on one parameter: the event's JSON text, in lower case, contains it."""

    def text_condition(self, query: Query) -> tuple[str, list[Any]]:
        """``query.text`` as a condition; a database with a text index overrides it."""
        assert query.text is not None
        return self.contains(), [query.text.lower()]

    def event(self, row: tuple[Any, ...]) -> StoredEvent:
        """A fetched row (``id`` then the columns) as a :class:`StoredEvent`."""
        return StoredEvent.from_row(row[0], row[1:])

    def where(self, query: Query) -> tuple[str, list[Any]]:
        """``query``'s filters as ``WHERE ...`` (or nothing) and its parameters."""
        p = self.param
        conditions: list[str] = []
        params: list[Any] = []
        compared = [
            ("dt >=", query.since_text),
            ("dt <", query.until_text),
            *((f"{name} =", getattr(query, name)) for name in ("api", "source", "dataset", "service")),
            ("id <", query.before),
            ("id >", query.after),
        ]
        for test, value in compared:
            if value is not None:
                conditions.append(f"{test} {p}")
                params.append(value)
        if query.levels:
            level = f"lower(coalesce({', '.join(self.json_text(f) for f in LEVEL_FIELDS)}))"
            conditions.append(f"{level} IN ({', '.join([p] * len(query.levels))})")
            params.extend(sorted(query.levels))
        if query.text is not None:
            condition, text_params = self.text_condition(query)
            conditions.append(f"({condition})")
            params.extend(text_params)
        return (" WHERE " + " AND ".join(conditions) if conditions else ""), params

    def _limit(self, query: Query) -> str:
        return f" LIMIT {int(query.limit)}" if query.limit else ""

    def search(self, query: Query) -> list[StoredEvent]:
        where, params = self.where(query)
        sql = f"SELECT {_COLUMNS} FROM {self.table}{where} ORDER BY id DESC{self._limit(query)}"
        return [self.event(row) for row in self.fetch(sql, params)]

    def after(self, cursor: int, query: Query) -> list[StoredEvent]:
        where, params = self.where(query.but(before=None, after=cursor))
        sql = f"SELECT {_COLUMNS} FROM {self.table}{where} ORDER BY id{self._limit(query)}"
        return [self.event(row) for row in self.fetch(sql, params)]

    def cursor(self) -> int:
        rows = self.fetch(f"SELECT max(id) FROM {self.table}", [])
        return int(rows[0][0] or 0)

    def get(self, event_id: int) -> StoredEvent | None:
        rows = self.fetch(f"SELECT {_COLUMNS} FROM {self.table} WHERE id = {self.param}", [event_id])
        return self.event(rows[0]) if rows else None

    def cursor_at(self, at: datetime) -> int:
        # A binary search over the ids (the primary key; reception time has no
        # index): a few dozen lookups, however large the table.
        p = self.param
        since = iso_utc(at.astimezone(UTC))
        low, high = 1, self.cursor() + 1
        while low < high:
            middle = (low + high) // 2
            rows = self.fetch(
                f"SELECT id, received_at >= {p} FROM {self.table} WHERE id >= {p} ORDER BY id LIMIT 1", [since, middle]
            )
            if not rows or rows[0][1]:
                high = middle
            else:
                low = int(rows[0][0]) + 1
        return low - 1

    def rate_counts(self, query: Query, bucket: int, by: str) -> RateCounts:
        where, params = self.where(query)
        at = f"({self.epoch('received_at')} / {int(bucket)}) * {int(bucket)}"
        sql = f"SELECT {at} AS at, coalesce({by}, ''), count(*) FROM {self.table}{where} GROUP BY 1, 2"
        return [(int(at), name, int(count)) for at, name, count in self.fetch(sql, params)]


def _alive(thread: weakref.ref[threading.Thread]) -> bool:
    found = thread()
    return found is not None and found.is_alive()


def _close_all(connections: Iterable[Any]) -> None:
    for connection in connections:
        try:
            connection.close()
        except Exception:  # closing what failed already: nothing to release
            pass
