"""A sink that appends one JSON object per event to a file."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from io import FileIO
from itertools import repeat

import orjson

from ..batch import Batch, each_event_json
from ..checks import whole_number
from .base import Outage, SinkUnavailable
from .disk import MIN_FREE_BYTES, require_free_space
from .group import GroupCommitSink, GroupWriter
from .record import iso_utc, iso_utc_each_bytes, label_runs

__all__ = ["JSONLinesSink"]


if sys.platform == "win32":  # pragma: no cover  # no flock: one writer per file there

    @contextmanager
    def _appending_alone(file: FileIO) -> Iterator[None]:
        yield

else:
    import fcntl

    @contextmanager
    def _appending_alone(file: FileIO) -> Iterator[None]:
        """Hold ``file``'s exclusive lock (``flock``) while a group is appended:
        every sink on the same file, in this process or another (``serve
        --workers``), appends and cuts back in turn, so that cutting back a
        failed group never cuts another writer's lines, nor do two writers'
        lines interleave."""
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        except OSError:  # a file system without locks: written as one writer would
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)


def _lines(batch: Batch) -> bytes:
    """The batch's lines: each is the shared part of the record (written once by
    orjson per run of events that share it) around the event's time and JSON,
    joined in C with no Python call per event. The keys are
    :data:`~ingest_mw.sinks.record.COLUMNS`, in order."""
    received = iso_utc(batch.received_at)
    parts = []
    for service, namespace, times, data in label_runs(batch):
        shared = orjson.dumps(
            {
                "received_at": received,
                "dt": "",
                "api": batch.api,
                "source": batch.source,
                "dataset": batch.dataset,
                "service": service,
                "namespace": namespace,
                "data": None,
            }
        )
        before_dt, _, rest = shared.partition(b'"dt":""')
        before_dt += b'"dt":"'
        before_data = b'"' + rest[: -len(b'"data":null}')] + b'"data":'
        dts = iso_utc_each_bytes(times)  # ISO text never needs JSON escapes
        lines = zip(repeat(before_dt), dts, repeat(before_data), each_event_json(data), repeat(b"}\n"))
        parts.append(b"".join(map(b"".join, lines)))
    return b"".join(parts)


class JSONLinesSink(GroupCommitSink):
    """Append events to ``path`` as JSON Lines, each batch written whole before the hook returns.

    Each line holds the :data:`~ingest_mw.sinks.record.COLUMNS`, with ``data``
    as the event object itself. ``fsync=True`` also survives a power cut, at
    the cost of a disk sync per write. Batches that wait for the file while
    another is written are written together, in one write (and one sync)
    (:class:`~ingest_mw.sinks.group.GroupWriter`); under ASGI, ``acall``
    hands a batch to the sink's writer thread instead of a worker thread.

    A batch that cannot be written (disk full, the file made unwritable)
    fails with :class:`~ingest_mw.sinks.SinkUnavailable` and leaves no part
    of itself in the file (it is cut back to where the batch began); the
    next batch opens the file again. A file moved away or deleted (a log
    rotation) is noticed before each batch and ``path`` opened anew. Sinks
    of several processes may append to one file (``serve --workers``): each
    writes under the file's lock, so that their lines never interleave and a
    cut takes only the failed batch.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = False,
        # Below this many bytes free on the file's disk, check() (/readyz) says
        # the sink unavailable, before a write fails (0: not asked).
        min_free_bytes: int = MIN_FREE_BYTES,
    ) -> None:
        self.path = os.fspath(path)
        self.fsync = fsync
        self.min_free_bytes = whole_number("min_free_bytes", min_free_bytes, minimum=0)
        self._writer = GroupWriter(self._write_group, what=f"JSON Lines sink {self.path}")
        self._lock = self._writer.lock
        self._file: FileIO | None = None
        self._identity: tuple[int, int] | None = None
        self._pid = 0  # the process that opened _file
        self._outage = Outage(f"JSON Lines sink {self.path}")
        with self._lock:
            self._open()  # a path that cannot be opened is said at once

    def _open(self) -> FileIO:
        try:
            file = FileIO(self.path, "ab")  # unbuffered: a failed write leaves nothing pending
            stat = os.fstat(file.fileno())
        except OSError as exc:
            raise self._outage.error(exc) from None
        self._file, self._identity, self._pid = file, (stat.st_dev, stat.st_ino), os.getpid()
        return file

    def _usable(self) -> FileIO:
        file = self._file
        # A forked process opens a file of its own: one it shares with its parent
        # shares its lock too, which then keeps neither from the other's writes.
        if file is not None and self._pid == os.getpid():
            try:
                stat = os.stat(self.path)
                if (stat.st_dev, stat.st_ino) == self._identity:
                    return file
            except OSError:
                pass
        self._drop()
        return self._open()

    def _drop(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass

    _payload = staticmethod(_lines)

    def _write_group(self, group: list[bytes]) -> list[SinkUnavailable | None]:
        """Write the lines of ``group`` at once (the lock is held); on failure
        the file is cut back to where the group began, and every batch of it
        fails."""
        text = group[0] if len(group) == 1 else b"".join(group)
        try:
            file = self._usable()
            try:
                with _appending_alone(file):
                    # The file's end now, under the lock: another process may have
                    # appended since this one last wrote, so not this file's tell().
                    start = os.fstat(file.fileno()).st_size
                    try:
                        written = 0
                        while written < len(text):  # a raw write may take part of it
                            written += file.write(memoryview(text)[written:]) or 0
                        if self.fsync:
                            os.fsync(file.fileno())
                    except OSError:
                        self._cut(file, start)
                        raise
            except OSError as exc:
                self._drop()
                raise self._outage.error(exc) from None
        except SinkUnavailable as exc:
            return [self._outage.failed(exc)] * len(group)
        self._outage.stored()
        return [None] * len(group)

    def _cut(self, file: FileIO, start: int) -> None:
        """Leave no partial batch behind: cut the file back to ``start`` (the lock is held)."""
        try:
            os.truncate(file.fileno(), start)
        except OSError:
            pass

    def check(self) -> None:
        """Prove ``path`` opens for append now and its disk has ``min_free_bytes``
        free; raise :class:`~ingest_mw.sinks.SinkUnavailable` if not."""
        with self._lock:
            self._usable()
            try:
                with open(self.path, "ab"):
                    pass
            except OSError as exc:
                raise self._outage.error(exc) from None
        # Outside the lock: a disk slow to answer holds up no write.
        require_free_space(self.path, self.min_free_bytes, self._outage)

    def close(self) -> None:
        self._writer.stop(timeout=30)
        with self._lock:
            self._drop()
