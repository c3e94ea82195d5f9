"""A sink that stores events in a PostgreSQL table, one ``COPY`` per batch (extra ``postgres``).

Several ingest servers may write to one database: this is the built-in
place for events when one machine is not enough. psycopg 3 with
``psycopg_pool``: a pool of plain connections for the sync face (WSGI, and
threads), a pool of asyncio connections for the async face (ASGI), each
made on first use in the process (and event loop) that uses it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import threading
from collections.abc import Sequence
from operator import methodcaller
from typing import Any

import msgpack
import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from ..batch import Batch, each_event_json, event_json, plain_event_json
from ..redact import masked
from .base import Outage, SinkUnavailable, made_off_the_loop_if_large
from .record import iso_utc, iso_utc_each_bytes, label_runs

__all__ = ["ESCAPED_JSON_KEY", "MSGPACK_KEY", "PostgresSink", "copy_text", "ddl"]

#: ``data`` of an event whose JSON text ``jsonb`` cannot hold (a ``\\u0000``
#: in a string or a key): ``{"_ingest_mw_json": "<the event's JSON text>"}``.
ESCAPED_JSON_KEY = "_ingest_mw_json"
#: ``data`` of an event JSON cannot hold exactly (MessagePack binary, keys
#: that are not strings, extension types): ``{"_ingest_mw_msgpack": "<base64
#: of the event packed as MessagePack>"}``; ``msgpack.unpackb(base64.b64decode(v),
#: timestamp=3, strict_map_key=False)`` gives the event back as it was decoded.
MSGPACK_KEY = "_ingest_mw_msgpack"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
#: The columns as the COPY writes them: the batch's shared ones first, so a
#: line is one shared prefix, the event's time and its JSON.
_COPY_COLUMNS = ("received_at", "api", "source", "dataset", "service", "namespace", "dt", "data")


def ddl(table: str = "events") -> str:
    """The ``CREATE TABLE`` and ``CREATE INDEX`` statements of the sink's table,
    for a team that manages its schema itself (see ``docs/sinks.md`` for a
    table partitioned by time)."""
    index = table.rpartition(".")[2] + "_dt"
    return f"""CREATE TABLE IF NOT EXISTS {table} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL,
    dt timestamptz NOT NULL,
    api text NOT NULL,
    source text NOT NULL,
    dataset text,
    service text,
    namespace text,
    data jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS {index} ON {table} (dt);
"""


def _check_table(table: str) -> str:
    parts = table.split(".")
    if len(parts) > 2 or not all(_NAME.fullmatch(part) for part in parts):
        raise ValueError(
            f"table={table!r}: give a table name, or schema.table, of letters, digits and"
            " underscores (not starting with a digit), each at most 63 characters"
        )
    return table


def _copy_field(value: str | None) -> bytes:
    """One field of COPY's text format: ``\\N`` for NULL, backslash and control characters escaped."""
    if value is None:
        return b"\\N"
    text = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text.encode()


_escape_backslashes = methodcaller("replace", b"\\", b"\\\\")
_NUL_ESCAPE = b"\\u0000"


def _exact_json(event: dict[str, Any]) -> bytes:
    """The ``data`` of one event the fast encoder refused: its JSON text when
    that is exact (nested deeper than orjson writes), else its MessagePack form."""
    try:
        packed = msgpack.packb(event, datetime=True)
    except (TypeError, ValueError):
        return event_json(event)  # not even MessagePack: JSON, as every other sink writes it
    try:
        if orjson.loads(event_json(event)) == event:
            return event_json(event)
    except orjson.JSONDecodeError:
        pass
    return orjson.dumps({MSGPACK_KEY: base64.b64encode(packed).decode()})


def _jsonb_text(event: dict[str, Any]) -> bytes:
    """One event's JSON text: orjson's, or the exact wrapper of an event orjson cannot write."""
    try:
        return plain_event_json(event)
    except orjson.JSONEncodeError:
        return _exact_json(event)


def _jsonb_texts(data: Sequence[dict[str, Any]]) -> list[bytes]:
    """Each event's JSON text, in a form ``jsonb`` takes whole (see :data:`ESCAPED_JSON_KEY`, :data:`MSGPACK_KEY`)."""
    texts = each_event_json(data, _jsonb_text)
    for index, text in enumerate(texts):
        if _NUL_ESCAPE in text:  # seldom: a search in C per event, and only these are rewritten
            texts[index] = orjson.dumps({ESCAPED_JSON_KEY: text.decode()})
    return texts


def copy_text(batch: Batch) -> bytes:
    """The batch as the data of ``COPY table (received_at, api, source, dataset,
    service, namespace, dt, data) FROM STDIN``, in its text format: one line per
    event, the batch's shared fields written once and repeated by ``join``."""
    received = iso_utc(batch.received_at)
    parts = []
    for service, namespace, times, data in label_runs(batch):
        if not data:
            continue
        shared = (received, batch.api, batch.source, batch.dataset, service, namespace)
        prefix = b"\t".join(map(_copy_field, shared)) + b"\t"
        lines = map(b"\t".join, zip(iso_utc_each_bytes(times), map(_escape_backslashes, _jsonb_texts(data))))
        parts.append(prefix + (b"\n" + prefix).join(lines) + b"\n")
    return b"".join(parts)


#: The errors that mean the database cannot store now (it is down, restarting,
#: out of disk, refusing connections) rather than this batch being wrong.
_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)


def _lost_the_database(error: psycopg.Error) -> bool:
    """Whether ``error`` says the connection to the database is gone (no SQLSTATE:
    it could not connect or the link broke; class 08, a connection exception;
    57P01-57P03, the server shutting down or starting), so that the pool is
    dropped and the next batch connects anew. A statement the database
    refused or cancelled on a sound connection (a lock or statement timeout,
    a full disk) leaves the pool as it is."""
    if not isinstance(error, _UNAVAILABLE):
        return False
    sqlstate = getattr(error, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")


#: The longest a batch waits for a connection while the database is failing
#: (a new pool connects in milliseconds once it is back).
OUTAGE_WAIT = 1.0
#: Whether the table exists (NULL when not, whatever this role may do).
_EXISTS = "SELECT to_regclass(%s) IS NOT NULL"
#: This role, and whether it may INSERT into the table (an error if there is none).
_MAY_INSERT = "SELECT current_user, has_table_privilege(%s, 'INSERT')"
#: What the database refuses a batch for, for its own values (a constraint of
#: the table, a value it cannot take, a row too large for an index of the
#: host's: class 54), while it stores others.
_REFUSED = (psycopg.IntegrityError, psycopg.DataError, psycopg.errors.ProgramLimitExceeded)


class PostgresSink:
    """Store events in ``table`` of the PostgreSQL database ``conninfo`` names.

    ``conninfo`` is a libpq URI (``postgresql://user:password@host:5432/db``)
    or key=value string. Each batch is one ``COPY`` on an autocommit
    connection: one statement, so one transaction, committed before the hook
    returns (so before the 202), all of it or nothing. The table has the
    SQLite sink's columns with ``received_at`` and ``dt`` as ``timestamptz``
    and ``data`` as ``jsonb`` (:func:`ddl`); it is created with its ``dt``
    index when missing unless ``create_table=False``.

    ``pool_size`` connections at most per face (sync, async), opened on first
    use. ``timeout`` bounds both the wait for a connection and the connect
    itself, so a request fails within seconds, not minutes, while the
    database is down. When the database stops, restarts or refuses, the batch
    fails with :class:`~ingest_mw.sinks.SinkUnavailable` (one line logged per
    outage, the password masked) and the pool is dropped: the next batch
    connects anew, so the sink stores again as soon as the database answers,
    without a restart.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        table: str = "events",
        pool_size: int = 4,
        timeout: float = 5.0,
        create_table: bool = True,
    ) -> None:
        self.shown = masked(conninfo)
        try:
            given = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"{self.shown}: not a PostgreSQL connection string ({exc})") from None
        if not (isinstance(pool_size, int) and pool_size >= 1):
            raise ValueError(f"pool_size must be a whole number >= 1, not {pool_size!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        self.conninfo = conninfo
        self.table = _check_table(table)
        self.pool_size = pool_size
        self.timeout = timeout
        self.create_table = create_table
        self.ddl = ddl(self.table)
        self._copy = f"COPY {self.table} ({', '.join(_COPY_COLUMNS)}) FROM STDIN"
        # libpq waits for a connection for ever unless told: the same bound as the pool's.
        self._kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in given:
            self._kwargs["connect_timeout"] = max(1, round(timeout))
        self._pool: ConnectionPool | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()
        self._apool: AsyncConnectionPool | None = None
        self._apool_loop: asyncio.AbstractEventLoop | None = None
        self._ready = not create_table  # whether the table is known to exist
        self._outage = Outage(f"PostgreSQL sink {self.shown} (table {self.table})")

    def __repr__(self) -> str:
        return f"PostgresSink({self.shown!r}, table={self.table!r})"

    def _connection_wait(self) -> float:
        """How long a batch or a check waits for a connection: ``timeout``, but
        at most :data:`OUTAGE_WAIT` while the database is failing, so that each
        batch meanwhile gets its 503 in a second, not in ``timeout``."""
        return min(self.timeout, OUTAGE_WAIT) if self._outage.failing else self.timeout

    def _failed(self, error: BaseException) -> SinkUnavailable:
        if isinstance(error, _REFUSED):
            return self._outage.refused(error)  # its own values: no outage of the database
        if isinstance(error, psycopg.errors.UndefinedTable) and self.create_table:
            self._ready = False  # dropped under us: made again by the next batch
        return self._outage.failed(error)

    # --- the sync face -------------------------------------------------------------------
    def _sync_pool(self) -> ConnectionPool:
        pool = self._pool
        if pool is not None and self._pool_pid == os.getpid():
            return pool
        with self._pool_lock:
            pool = self._pool
            if pool is not None and self._pool_pid == os.getpid():
                return pool
            pool = ConnectionPool(
                self.conninfo,
                kwargs=self._kwargs,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.timeout,
                name=f"ingest_mw {self.table}",
                open=False,
            )
            pool.open(wait=False)
            self._pool, self._pool_pid = pool, os.getpid()
            return pool

    def _discard(self, pool: ConnectionPool) -> None:
        """Drop a pool whose database failed: the next batch makes a new one,
        which connects at once. The pool's own reconnection waits longer and
        longer between attempts (seconds, then minutes) while the database is
        down, so it would keep failing batches for that long once it is back.
        Connections in use elsewhere are closed when they are given back."""
        with self._pool_lock:
            if self._pool is pool:
                self._pool = None
        pool.close(timeout=0)

    def _prepare(self, connection: psycopg.Connection[Any]) -> None:
        if not self._ready:
            # Made only when missing: CREATE ... IF NOT EXISTS needs CREATE on the
            # schema and the index's ownership even when both exist, which a
            # role that may only INSERT into a table its DBA made has not.
            (exists,) = connection.execute(_EXISTS, (self.table,)).fetchone() or (False,)
            if not exists:
                try:
                    connection.execute(self.ddl)
                except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
                    pass  # another server made it at the same moment
            self._ready = True

    def __call__(self, batch: Batch) -> None:
        body = copy_text(batch)  # before taking a connection: the batch's own errors need none
        pool = self._sync_pool()
        try:
            with pool.connection(self._connection_wait()) as connection:
                self._prepare(connection)
                with connection.cursor() as cursor, cursor.copy(self._copy) as copy:
                    copy.write(body)
        except psycopg.Error as exc:
            if _lost_the_database(exc):
                self._discard(pool)
            raise self._failed(exc) from None
        self._outage.stored()

    def check(self) -> None:
        """Prove the database answers, the table is there and this role may
        INSERT into it (a round trip); raise
        :class:`~ingest_mw.sinks.SinkUnavailable` if not."""
        pool = self._sync_pool()
        try:
            with pool.connection(self._connection_wait()) as connection:
                self._prepare(connection)
                row = connection.execute(_MAY_INSERT, (self.table,)).fetchone()
        except psycopg.Error as exc:  # PoolTimeout is one
            if _lost_the_database(exc):
                self._discard(pool)
            raise self._outage.error(exc) from None
        self._may_insert(row)

    def _may_insert(self, row: tuple[Any, ...] | None) -> None:
        """:data:`_MAY_INSERT`'s answer, or the one line of a role that may not."""
        if row is None or not row[1]:
            role = row[0] if row else "this role"
            raise SinkUnavailable(
                f"{self._outage.what}: role {role} may not INSERT into {self.table}:"
                f" GRANT INSERT ON {self.table} TO {role}"
            )

    # --- the async face ----------------------------------------------------------------
    async def _async_pool(self) -> AsyncConnectionPool:
        loop = asyncio.get_running_loop()
        pool = self._apool
        if pool is None or self._apool_loop is not loop:
            pool = AsyncConnectionPool(
                self.conninfo,
                kwargs=self._kwargs,
                # Connections made on demand, none kept open in the background:
                # an event loop that ends (asyncio.run per call, in a host's
                # tests) is never left waiting on a connection attempt.
                min_size=0,
                max_size=self.pool_size,
                timeout=self.timeout,
                name=f"ingest_mw {self.table} (async)",
                open=False,
            )
            await pool.open(wait=False)
            self._apool, self._apool_loop = pool, loop
        return pool

    async def _adiscard(self, pool: AsyncConnectionPool) -> None:
        """:meth:`_discard` for the async face."""
        if self._apool is pool:
            self._apool = None
        await pool.close(timeout=0)

    async def _aprepare(self, connection: psycopg.AsyncConnection[Any]) -> None:
        if not self._ready:  # as _prepare
            (exists,) = await (await connection.execute(_EXISTS, (self.table,))).fetchone() or (False,)
            if not exists:
                try:
                    await connection.execute(self.ddl)
                except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
                    pass
            self._ready = True

    async def acall(self, batch: Batch) -> None:
        """Store ``batch`` from async code, on the event loop's own connections
        (the COPY text of a large batch made off the loop)."""
        body = await made_off_the_loop_if_large(copy_text, batch)
        pool = await self._async_pool()
        try:
            async with pool.connection(self._connection_wait()) as connection:
                await self._aprepare(connection)
                async with connection.cursor() as cursor, cursor.copy(self._copy) as copy:
                    await copy.write(body)
        except psycopg.Error as exc:
            if _lost_the_database(exc):
                await self._adiscard(pool)
            raise self._failed(exc) from None
        self._outage.stored()

    async def acheck(self) -> None:
        """:meth:`check` from async code."""
        pool = await self._async_pool()
        try:
            async with pool.connection(self._connection_wait()) as connection:
                await self._aprepare(connection)
                row = await (await connection.execute(_MAY_INSERT, (self.table,))).fetchone()
        except psycopg.Error as exc:
            if _lost_the_database(exc):
                await self._adiscard(pool)
            raise self._outage.error(exc) from None
        self._may_insert(row)

    # --- closing -----------------------------------------------------------------------
    def close(self) -> None:
        """Close the sync pool (the async one is closed by :meth:`aclose`)."""
        pool, self._pool = self._pool, None
        if pool is not None and self._pool_pid == os.getpid():
            pool.close()

    def __del__(self) -> None:
        # A sink dropped unclosed (a host's settings changed, a test) stops its
        # pool's threads now; psycopg_pool's own __del__ may otherwise run in one
        # of them, which cannot join itself.
        pool = getattr(self, "_pool", None)
        if pool is not None and self._pool_pid == os.getpid():
            try:
                pool.close(timeout=0)
            except Exception:
                pass

    async def aclose(self) -> None:
        """Close both pools, from the event loop the async one runs on."""
        pool, self._apool = self._apool, None
        if pool is not None and self._apool_loop is asyncio.get_running_loop():
            await pool.close()
        if self._pool is not None:
            await asyncio.to_thread(self.close)
