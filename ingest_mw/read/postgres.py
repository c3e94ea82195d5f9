"""Read a PostgreSQL sink's table (extra ``postgres``): the SQL reader in PostgreSQL's spelling."""

from __future__ import annotations

from collections.abc import Hashable
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg

from ..sinks.record import iso_utc
from .query import StoredEvent
from .sql import SQLReader

__all__ = ["PostgresReader"]


class PostgresReader(SQLReader):
    """Read ``table`` as :class:`~ingest_mw.sinks.postgres.PostgresSink` writes it
    (``timestamptz`` times, ``jsonb`` data), one connection per thread in
    autocommit mode: each read is a snapshot of its own and holds no lock a
    writer waits for. The free-text filter looks in ``data::text``, which is
    ``jsonb``'s own spelling (``{"a": 1}``, keys sorted by length). Raises
    ``ValueError`` when the database cannot be reached or has no such table."""

    param = "%s"

    @classmethod
    def for_sink(cls, sink: Any) -> PostgresReader:
        return cls(sink.conninfo, table=sink.table)

    def __init__(self, conninfo: str, *, table: str = "events") -> None:
        self.conninfo = conninfo
        self.table = table  # checked by the sink that names it
        super().__init__()
        try:
            (found,) = self.fetch("SELECT to_regclass(%s) IS NOT NULL", [table])[0]
        except psycopg.Error as exc:
            raise ValueError(f"cannot read the PostgreSQL sink: {type(exc).__name__}") from None
        if not found:
            raise ValueError(f"no table {table!r} in that database (nothing stored yet?)")

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo, autocommit=True)

    def usable(self, connection: Any) -> bool:
        return not connection.closed  # (one the server closed: this thread opens another)

    def event(self, row: tuple[Any, ...]) -> StoredEvent:
        event_id, received_at, dt, *head, data = row
        times = [iso_utc(t.astimezone(UTC)) if isinstance(t, datetime) else t for t in (received_at, dt)]
        return StoredEvent.from_row(event_id, [*times, *head, orjson.dumps(data)])

    def json_text(self, field: str) -> str:
        return "(data ->> '" + field.replace("'", "''") + "')"

    def epoch(self, column: str) -> str:
        return f"floor(extract(epoch FROM {column}))::bigint"

    def contains(self) -> str:
        return "strpos(lower(data::text), %s) > 0"

    def fingerprint(self) -> Hashable:
        # The newest id, from the primary key's index: one cheap query a look.
        return self.cursor()
