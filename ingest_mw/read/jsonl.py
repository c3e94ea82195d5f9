"""Read a JSON Lines sink's file: one stored event per line, read without locking the writer."""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterator
from typing import Any, BinaryIO

import orjson

from ..sinks.record import COLUMNS
from .base import ScanReader
from .query import StoredEvent

__all__ = ["JSONLinesReader"]

_CHUNK = 1 << 20
_REQUIRED = ("received_at", "dt", "api", "source")


class JSONLinesReader(ScanReader):
    """Read the file ``path`` as :class:`~ingest_mw.sinks.JSONLinesSink` writes it.

    An event's id is the offset just past its line, so ids grow in arrival
    order and a follower reads on from its cursor. A line still being
    written (no newline yet) is left for the next read. Raises ``ValueError``
    when ``path`` is missing or its first line is not a stored event.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise ValueError(f"{self.path}: no such file (nothing stored yet?)")
        with open(self.path, "rb") as file:
            first = file.readline()
        if first.endswith(b"\n"):
            try:
                self._event(first, len(first))
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{self.path}: not an ingest JSON Lines file (no stored event)") from None

    @staticmethod
    def _event(line: bytes, end: int) -> StoredEvent:
        record: dict[str, Any] = orjson.loads(line)
        if not isinstance(record.get("data"), dict):
            raise ValueError("no event object")
        head = [record[name] if name in _REQUIRED else record.get(name) for name in COLUMNS[:-1]]
        return StoredEvent.from_row(end, [*head, orjson.dumps(record["data"])])

    def scan(self, after: int = 0) -> Iterator[StoredEvent]:
        with open(self.path, "rb") as file:
            file.seek(after)
            offset = after
            rest = b""
            while chunk := file.read(_CHUNK):
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()  # after the last newline: incomplete, or empty
                for line in lines:
                    offset += len(line) + 1
                    if line.strip():
                        yield self._event(line, offset)

    def backwards(self, before: int | None = None, after: int = 0) -> Iterator[StoredEvent]:
        # From the last whole line (before ``before``) back, a block at a time;
        # ``carry`` is the start of a line whose beginning is in the next block back.
        with open(self.path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            position = self._last_line_end(file, size if before is None else min(before - 1, size))
            carry = b""
            while position > after:
                start = max(after, position - _CHUNK)
                file.seek(start)
                block = file.read(position - start) + carry
                line_end = start + len(block)
                parts = block.split(b"\n")
                parts.pop()  # the block ends with a newline: nothing after it
                carry = parts.pop(0) + b"\n" if start > after else b""
                for part in reversed(parts):
                    if part.strip():
                        yield self._event(part, line_end)
                    line_end -= len(part) + 1
                position = start

    @staticmethod
    def _last_line_end(file: BinaryIO, end: int) -> int:
        """The offset just past the last newline at or before ``end``."""
        position = end
        while position > 0:
            step = min(position, 64 * 1024)
            file.seek(position - step)
            found = file.read(step).rfind(b"\n")
            if found >= 0:
                return position - step + found + 1
            position -= step
        return 0

    def get(self, event_id: int) -> StoredEvent | None:
        if event_id < 1:
            return None
        with open(self.path, "rb") as file:
            start = self._last_line_end(file, event_id - 1)
            file.seek(start)
            line = file.read(event_id - start)
        if not line.endswith(b"\n") or not line.strip():
            return None
        return self._event(line, event_id)

    def cursor(self) -> int:
        with open(self.path, "rb") as file:
            # Stand at the end of the last complete line, however long the unfinished one after it.
            return self._last_line_end(file, file.seek(0, os.SEEK_END))

    def fingerprint(self) -> Hashable:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns, st.st_ino
