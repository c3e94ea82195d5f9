"""The embedded default sink: an SQLite file in WAL mode, batches committed together when they meet."""

from __future__ import annotations

import os
import sqlite3
import time
from functools import cache
from itertools import chain
from urllib.parse import quote

from ..batch import Batch, each_event_json
from ..checks import whole_number
from .base import Outage, SinkUnavailable
from .disk import MIN_FREE_BYTES, require_free_space
from .group import GroupCommitSink, GroupWriter
from .record import iso_utc, iso_utc_each, label_runs
from .wakeable import WakeableThread

__all__ = ["BUSY_TIMEOUT", "CACHE_KIB", "CHECKPOINT_INTERVAL", "SQLiteSink"]

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

#: How long a writer waits for another connection's lock (another worker
#: process's batch, a checkpoint, a reader's ``BEGIN IMMEDIATE``) before its
#: batch fails, in seconds. A 1000-event batch holds the lock for a few
#: milliseconds and the largest body (6 MiB) for a few hundred, so 5 s (the
#: sqlite3 module's own default) rides out a queue of many writers, yet stays
#: well below the timeouts of log shippers, which then retry.
BUSY_TIMEOUT = 5.0

#: Rows per INSERT statement, largest first: a batch is written as a few
#: multi-row INSERTs (1000 events: 3 x 256 + 3 x 64 + 2 x 16 + 2 x 4), each
#: binding the batch's shared columns once and two values per event, and run
#: by SQLite in one step without the GIL. That costs less than the one
#: statement per row of ``executemany``, which binds every column of every row
#: with the GIL held. A handful of sizes keeps the statement cache small.
_CHUNKS = (256, 64, 16, 4, 1)
#: The columns every event of a batch shares, bound as ?1 to ?6 in every
#: statement (with ``dt`` and ``data``: :data:`~ingest_mw.sinks.record.COLUMNS`).
_SHARED = ("received_at", "api", "source", "dataset", "service", "namespace")


#: The writer's page cache, in KiB (SQLite's default is 2 MiB): the ``dt``
#: index of a table of millions of rows no longer fits in 2 MiB, and every
#: batch then reads its pages back from the file. Measured under ``serve``
#: on tmpfs, 64 MiB stored about 30 % more events a second; the cache grows
#: only as far as it is used, per connection (one per process).
CACHE_KIB = 65_536

#: The checkpointer runs at most this often, in seconds: batches in between only append to the WAL.
CHECKPOINT_INTERVAL = 0.1
#: Pages the WAL may hold before the writer checkpoints it itself, should the
#: checkpointer fall behind (SQLite's default is 1000: 4 MB, a dozen batches).
_WRITER_CHECKPOINT_PAGES = 20_000


class _Checkpointer:
    """Copies the WAL into the database file from a thread of its own.

    SQLite checkpoints from the connection that commits, once the WAL holds
    1000 pages, and a checkpoint syncs the file to disk: the batch that
    happens to cross the line waits for the disk, tens to hundreds of
    milliseconds on a busy one, while every other batch waits for its lock.
    Here the writer only appends (a commit in WAL mode with
    ``synchronous=NORMAL`` syncs nothing), and this thread runs a ``PASSIVE``
    checkpoint after commits, at most every :data:`CHECKPOINT_INTERVAL`
    seconds; ``PASSIVE`` never blocks a writer, and is safe beside other
    processes' checkpointers.
    """

    def __init__(self, path: str, busy_timeout: float) -> None:
        self.path = os.path.abspath(path)
        self.uri = f"file:{quote(self.path)}?mode=rw"  # never makes a file that is not there
        self.busy_timeout = busy_timeout
        self._thread = WakeableThread("ingest_mw-sqlite-checkpoint", self._checkpoint, finish=self._close)
        # One connection for as long as it is on the same file: a file replaced
        # (or removed) since is opened anew, and one that fails is too.
        self._db: sqlite3.Connection | None = None
        self._opened_on: tuple[int, int] | None = None

    def written(self) -> None:
        """Called after each commit: a checkpoint is due."""
        self._thread.wake()

    def _checkpoint(self) -> None:
        try:
            stat = os.stat(self.path)
            if self._db is None or self._opened_on != (stat.st_dev, stat.st_ino):
                self._close()
                self._db = sqlite3.connect(self.uri, uri=True, timeout=self.busy_timeout, check_same_thread=False)
                self._opened_on = (stat.st_dev, stat.st_ino)
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except (OSError, sqlite3.Error):
            # A file that fails shows in the next batch; the writer checkpoints if need be.
            self._close()
        time.sleep(CHECKPOINT_INTERVAL)

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def stop(self) -> None:
        self._thread.stop(timeout=5)


@cache
def _insert(count: int) -> str:
    values = ",".join(f"(?1,?2,?3,?4,?5,?6,?{7 + 2 * i},?{8 + 2 * i})" for i in range(count))
    return f"INSERT INTO events ({', '.join(_SHARED)}, dt, data) VALUES {values}"


_decode = bytes.decode


#: A batch's rows, as :func:`_rows` makes them.
Rows = list[tuple[tuple[str | None, ...], list[str]]]

#: What SQLite raises for a batch's own values, not for the state of the file.
_BATCH_ERRORS = (sqlite3.DataError, sqlite3.IntegrityError)


def _rows(batch: Batch) -> Rows:
    """The batch's rows: per run of events with the same labels, the shared
    columns and each event's ``dt`` and ``data``. Made before the lock: an
    event that cannot be written fails alone, without the database."""
    received = iso_utc(batch.received_at)
    return [
        (
            (received, batch.api, batch.source, batch.dataset, service, namespace),
            list(chain.from_iterable(zip(iso_utc_each(times), map(_decode, each_event_json(data))))),
        )
        for service, namespace, times, data in label_runs(batch)
    ]


class SQLiteSink(GroupCommitSink):
    """Store events in the ``events`` table of the SQLite file ``path``.

    One connection guarded by a lock: SQLite takes one writer at a time
    anyway, and this makes the sink safe under concurrent requests from any
    thread. Several processes (``serve --workers``) may share the file: WAL
    lets readers read while one writes, and a writer waits up to
    ``busy_timeout`` seconds (:data:`BUSY_TIMEOUT`) for another's lock
    instead of failing. ``synchronous=NORMAL``: a committed batch survives
    the process being killed; ``"FULL"`` also survives a power cut. The batch
    is committed before the hook returns, so before the 202; batches that
    wait for the lock while another commits are committed together, in one
    transaction (a batch the file refuses is then tried alone, so that it
    fails alone).

    When the file stops working (made read-only, its directory deleted, the
    disk full) the batch fails with :class:`~ingest_mw.sinks.SinkUnavailable`,
    one line is logged, and the next batch opens the file again: the sink
    stores again as soon as the file can be written, without a restart. A
    file deleted or replaced under the sink is noticed before each batch, so
    no batch is acknowledged into a file nobody can read any more.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = BUSY_TIMEOUT,
        # Below this many bytes free on the file's disk, check() (/readyz) says
        # the sink unavailable, before a write fails (0: not asked).
        min_free_bytes: int = MIN_FREE_BYTES,
    ) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        if not busy_timeout >= 0:
            raise ValueError(f"busy_timeout must be a number of seconds >= 0, not {busy_timeout!r}")
        self.path = os.fspath(path)
        self.synchronous = synchronous.upper()
        self.busy_timeout = busy_timeout
        self.min_free_bytes = whole_number("min_free_bytes", min_free_bytes, minimum=0)
        self._in_memory = self.path in ("", ":memory:") or self.path.startswith("file::memory:")
        self._writer = GroupWriter(self._write_group, what=f"SQLite sink {self.path}")
        self._lock = self._writer.lock
        self._db: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened
        self._pid = 0  # the process that opened _db: a forked worker opens its own
        self._outage = Outage(f"SQLite sink {self.path}")
        self._checkpointer = None if self._in_memory else _Checkpointer(self.path, busy_timeout)
        with self._lock:
            self._connect()  # a path that cannot be opened is said at once

    # --- the connection --------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False, isolation_level=None)
            try:
                self._set_up(db)
                self._file = None if self._in_memory else _identity(self.path)
            except BaseException:
                db.close()
                raise
        except (sqlite3.Error, OSError) as exc:
            raise self._outage.error(exc) from None
        self._db = db
        self._pid = os.getpid()
        return db

    def _set_up(self, db: sqlite3.Connection) -> None:
        """WAL mode, the connection's pragmas and the schema. Processes that open
        a new file at the same moment (``serve --workers N`` at start) can meet
        "database is locked" where SQLite's busy handler does not wait (turning
        a file to WAL): tried again until the busy timeout, a little later."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # (kept by the file, once set)
                    db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA synchronous={self.synchronous}")
                db.execute(f"PRAGMA wal_autocheckpoint={_WRITER_CHECKPOINT_PAGES}")  # the checkpointer's job
                db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
                db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def _usable(self) -> sqlite3.Connection:
        """The open connection, reopened when the last batch failed, the file was
        deleted or replaced since it was opened, or this is a forked process."""
        db = self._db
        if db is not None and self._pid == os.getpid():
            if self._in_memory:
                return db
            try:
                if _identity(self.path) == self._file:
                    return db
            except OSError:
                pass
        self._drop()
        return self._connect()

    def _drop(self) -> None:
        db, self._db = self._db, None
        if db is not None and self._pid == os.getpid():
            try:
                db.close()
            except sqlite3.Error:
                pass

    # --- the hook ------------------------------------------------------------------------
    _payload = staticmethod(_rows)

    def _write_group(self, group: list[Rows]) -> list[SinkUnavailable | None]:
        """Commit the batches of ``group`` in one transaction (the lock is held);
        a batch SQLite itself refuses (a value over its length limit, a
        constraint) is then tried alone, so that it fails alone. A failure of
        the file (locked past the busy timeout, read-only, gone) is every
        batch's: not tried again."""
        try:
            self._commit(group)
        except _BATCH_ERRORS as exc:
            if len(group) == 1:
                return [self._outage.refused(exc)]  # its own values: no outage of the file
            outcomes: list[SinkUnavailable | None] = []
            for tried, rows in enumerate(group):
                try:
                    self._commit([rows])
                except _BATCH_ERRORS as own:
                    outcomes.append(self._outage.refused(own))
                except (sqlite3.Error, SinkUnavailable) as failure:  # the file's: the rest fail with it, untried
                    return outcomes + [self._file_failed(failure)] * (len(group) - tried)
                else:
                    outcomes.append(None)
            if None in outcomes:
                self._outage.stored()
            return outcomes
        except (sqlite3.Error, SinkUnavailable) as exc:
            return [self._file_failed(exc)] * len(group)
        self._outage.stored()
        return [None] * len(group)

    def _file_failed(self, failure: sqlite3.Error | SinkUnavailable) -> SinkUnavailable:
        """Why a write failed that the file refused (not a batch's values): logged
        once per outage; the connection is opened anew by the next write."""
        if isinstance(failure, sqlite3.Error):
            self._drop()
        return self._outage.failed(failure)

    def _commit(self, group: list[Rows]) -> None:
        db = self._usable()
        db.execute("BEGIN IMMEDIATE")
        try:
            for runs in group:
                for shared, values in runs:
                    count, start = len(values) // 2, 0
                    for size in _CHUNKS:
                        while count - start >= size:
                            db.execute(_insert(size), shared + tuple(values[2 * start : 2 * (start + size)]))
                            start += size
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if self._checkpointer is not None:
            self._checkpointer.written()

    def check(self) -> None:
        """Prove the file can be written now (``BEGIN IMMEDIATE``, a ``DELETE``
        of no row, ``ROLLBACK``), reopening it if need be, and that its disk
        has ``min_free_bytes`` free; raise
        :class:`~ingest_mw.sinks.SinkUnavailable` if not."""
        with self._lock:
            try:
                db = self._usable()
                db.execute("BEGIN IMMEDIATE")
                try:
                    # Writes nothing, but starts a write on the file itself: a
                    # read-only file (which BEGIN IMMEDIATE alone lets through in
                    # WAL mode) refuses it.
                    db.execute("DELETE FROM events WHERE 0")
                finally:
                    db.execute("ROLLBACK")
            except SinkUnavailable:
                raise
            except sqlite3.Error as exc:
                self._drop()
                raise self._outage.error(exc) from None
        if not self._in_memory:
            require_free_space(self.path, self.min_free_bytes, self._outage)

    def close(self) -> None:
        self._writer.stop(timeout=self.busy_timeout + 5)
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            self._drop()


def _identity(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino
