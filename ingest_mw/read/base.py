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
from datetime import UTC, datetime, timedelta
from typing import Any

from .query import Query, StoredEvent

__all__ = ["RateCounts", "Reader", "ScanReader", "bucket_seconds", "rate_series"]

#: ``(bucket start as Unix seconds, series name, events)`` rows of a rate.
RateCounts = Iterable[tuple[int, str, int]]

#: Chart buckets from a minute up: the smallest that keeps a range within
#: :data:`MAX_BUCKETS` bars (an hour is 60 one-minute bars).
_BUCKET_STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)
MAX_BUCKETS = 180
#: The series a chart is split by: a stored column.
RATE_SERIES = ("source", "api", "dataset", "service")


def bucket_seconds(since: datetime, until: datetime) -> int:
    span = (until - since).total_seconds()
    for step in _BUCKET_STEPS:
        if span / step <= MAX_BUCKETS:
            return step
    return _BUCKET_STEPS[-1]


def rate_series(counts: RateCounts, *, since: datetime, until: datetime, bucket: int) -> dict[str, object]:
    """Counts per bucket and series as the chart draws them: every bucket of
    ``[since, until)`` present (zero where nothing arrived), series by name."""
    start = int(since.timestamp()) // bucket * bucket
    size = max(1, -(-(int(until.timestamp()) - start) // bucket))
    series: dict[str, list[int]] = {}
    for at, name, count in counts:
        index = (at - start) // bucket
        if 0 <= index < size:
            series.setdefault(name, [0] * size)[index] += count
    return {"start": start, "bucket": bucket, "buckets": size, "series": series}


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
        """Events matching ``query`` (with ``since`` and ``until`` set) per
        ``bucket`` seconds of event time and per value of the column ``by``."""

    @abstractmethod
    def fingerprint(self) -> Hashable:
        """Something cheap that changes whenever an event may have been stored:
        a follower compares it instead of querying."""

    def rate(self, query: Query, *, by: str = "source") -> dict[str, object]:
        """Events per bucket over ``query.since`` .. ``query.until`` (default: the
        last hour up to now), by ``by``: a :func:`rate_series`."""
        if by not in RATE_SERIES:
            raise ValueError(f"by must be one of {', '.join(RATE_SERIES)}, not {by!r}")
        until = query.until or datetime.now(UTC)
        since = query.since or until - timedelta(hours=1)
        bucket = bucket_seconds(since, until)
        counts = self.rate_counts(query.but(since=since, until=until, before=None, limit=0), bucket, by)
        return rate_series(counts, since=since, until=until, bucket=bucket)

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

    def get(self, event_id: int) -> StoredEvent | None:
        for event in self.scan(event_id - 1):
            return event if event.id == event_id else None
        return None

    def rate_counts(self, query: Query, bucket: int, by: str) -> RateCounts:
        counts: dict[tuple[int, str], int] = {}
        for event in self.scan():
            if query.matches(event):
                at = int(datetime.fromisoformat(event.dt).timestamp()) // bucket * bucket
                key = (at, getattr(event, by) or "")
                counts[key] = counts.get(key, 0) + 1
        return [(at, name, count) for (at, name), count in counts.items()]
