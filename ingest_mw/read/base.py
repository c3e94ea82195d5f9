"""The reader interface: what the ``tail`` command and the Live Tail page ask of a sink.

A :class:`Reader` reads what one sink stored, beside it, never in the
ingest path: it opens its own handle on the storage (a read-only SQLite
connection, the JSON Lines file) or looks at a memory sink's kept batches.
:class:`ScanReader` is the base of readers that can only scan in arrival
order (JSON Lines, memory): they filter with :meth:`Query.matches`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from ..sinks.record import iso_utc
from .query import Query, StoredEvent

__all__ = ["RateCounts", "Reader", "ScanReader"]

#: ``(bucket start as Unix seconds, series name, events)`` rows of a rate.
RateCounts = Iterable[tuple[int, str, int]]


class Reader(ABC):
    """Reads one sink's stored events. Every method is blocking (run it in a
    thread from async code) and safe to call from any thread."""

    #: Whether the storage keeps the event ids (a table's ``id``), so that the
    #: stored row includes it; otherwise the id is the reader's own.
    stores_ids = False

    @classmethod
    def for_sink(cls, sink: Any) -> Reader:
        """The reader of ``sink``, an instance of the sink class this reader reads
        (by default, one with a ``path``)."""
        return cls(sink.path)  # type: ignore[call-arg]  # a file's reader takes its path

    @abstractmethod
    def search(self, query: Query) -> list[StoredEvent]:
        """The newest ``query.limit`` events matching ``query`` (between
        ``query.after`` and ``query.before`` when given), newest first."""

    @abstractmethod
    def after(self, cursor: int, query: Query) -> list[StoredEvent]:
        """Events stored after ``cursor`` matching ``query``, oldest first, at
        most ``query.limit``: a follower's next step."""

    @abstractmethod
    def cursor(self) -> int:
        """A cursor for :meth:`after` that stands at the newest stored event."""

    @abstractmethod
    def get(self, event_id: int) -> StoredEvent | None:
        """The event with ``event_id``, if it is still stored."""

    @abstractmethod
    def rate_counts(self, query: Query, bucket: int, by: str) -> RateCounts:
        """Events matching ``query`` (its ids bounded by ``after`` and ``before``)
        per ``bucket`` seconds of reception time and per value of the column
        ``by`` (one of :data:`~ingest_mw.read.rate.RATE_SERIES`)."""

    @abstractmethod
    def cursor_at(self, at: datetime) -> int:
        """A cursor for :meth:`after` standing just before the first event
        received at or after ``at`` (at the newest when none was): ids grow
        with reception time."""

    @abstractmethod
    def fingerprint(self) -> Hashable:
        """Something cheap that changes whenever an event may have been stored:
        a follower compares it instead of querying."""

    def close(self) -> None:  # noqa: B027 (optional: most readers hold nothing open)
        """Release the reader's own handles (never the sink's)."""


class ScanReader(Reader):
    """A reader over storage read in arrival order: every query is a scan."""

    @abstractmethod
    def scan(self, after: int = 0) -> Iterator[StoredEvent]:
        """The stored events with an id above ``after``, oldest first."""

    def backwards(self, before: int | None = None, after: int = 0) -> Iterator[StoredEvent]:
        """The stored events with ids between ``after`` and ``before`` (both
        excluded), newest first. A reader that can walk its storage from the
        end overrides this: a search then reads only as far back as it needs."""
        found = [event for event in self.scan(after) if before is None or event.id < before]
        return reversed(found)

    def search(self, query: Query) -> list[StoredEvent]:
        found: list[StoredEvent] = []
        for event in self.backwards(query.before, query.after or 0):
            if query.matches(event):
                found.append(event)
                if len(found) == query.limit:
                    break
        return found

    def after(self, cursor: int, query: Query) -> list[StoredEvent]:
        found: list[StoredEvent] = []
        for event in self.scan(cursor):
            if query.matches(event):
                found.append(event)
                if len(found) == query.limit:
                    break
        return found

    def cursor_at(self, at: datetime) -> int:
        since = iso_utc(at.astimezone(UTC))
        last = 0
        for event in self.scan():
            if event.received_at >= since:
                break
            last = event.id
        return last

    def get(self, event_id: int) -> StoredEvent | None:
        for event in self.scan(event_id - 1):
            return event if event.id == event_id else None
        return None

    def rate_counts(self, query: Query, bucket: int, by: str) -> RateCounts:
        counts: dict[tuple[int, str], int] = {}
        for event in self.scan(query.after or 0):
            if query.before is not None and event.id >= query.before:
                break
            if query.matches(event):
                at = int(datetime.fromisoformat(event.received_at).timestamp()) // bucket * bucket
                key = (at, getattr(event, by) or "")
                counts[key] = counts.get(key, 0) + 1
        return [(at, name, count) for (at, name), count in counts.items()]
