"""A sink that appends one JSON object per event to a file."""

from __future__ import annotations

import os
import threading

import orjson

from ..batch import Batch
from .record import COLUMNS, rows

__all__ = ["JSONLinesSink"]


class JSONLinesSink:
    """Append events to ``path`` as JSON Lines, one write and flush per batch.

    Each line holds the :data:`~ingest_mw.sinks.record.COLUMNS`, with ``data``
    as the event object itself. ``fsync=True`` also survives a power cut, at
    the cost of a disk sync per batch.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = os.fspath(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._file = open(self.path, "ab")

    def __call__(self, batch: Batch) -> None:
        lines = []
        for *head, data in rows(batch):
            record: dict[str, object] = dict(zip(COLUMNS, head))
            record["data"] = orjson.Fragment(data)  # type: ignore[arg-type]  # JSON text, never None
            lines.append(orjson.dumps(record))
        lines.append(b"")
        with self._lock:
            self._file.write(b"\n".join(lines))
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._file.close()
