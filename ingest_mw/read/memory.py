"""Read a :class:`~ingest_mw.sinks.JSONMemorySink` from inside its process (``memory://``)."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator

from ..sinks.memory import KEPT_COUNT, JSONMemorySink, Kept, kept_batch
from ..sinks.record import rows
from .base import RateCounts, ScanReader
from .query import Query, StoredEvent

__all__ = ["MemoryReader"]


class MemoryReader(ScanReader):
    """Read the batches ``sink`` keeps, each event numbered in arrival order.

    The sink keeps no ids: the reader counts the events it has seen kept
    and numbers them back from the newest batch, which it knows by identity
    (it holds that one tuple). A look copies the sink's kept batches
    (:meth:`~ingest_mw.sinks.JSONMemorySink.kept`, a list copy), then counts
    only what is new; a search from the newest end decodes only the batches
    it reaches; :meth:`fingerprint` copies nothing.
    """

    @classmethod
    def for_sink(cls, sink: JSONMemorySink) -> MemoryReader:
        return cls(sink)

    def __init__(self, sink: JSONMemorySink) -> None:
        self.sink = sink
        self._newest: Kept | None = None  # the newest batch seen kept
        self._next = 1  # the id after the newest batch's last event
        self._lock = threading.Lock()

    def _kept(self) -> tuple[list[Kept], int]:
        """The kept batches, oldest first, and the id after the newest one's last event."""
        kept = self.sink.kept()
        with self._lock:
            new = 0
            for batch in reversed(kept):
                if batch is self._newest:
                    break
                new += batch[KEPT_COUNT]
            self._next += new
            self._newest = kept[-1] if kept else None
            return kept, self._next

    def _numbered_backwards(self) -> Iterator[tuple[Kept, int]]:
        """(kept batch, id of its first event), newest first."""
        kept, end = self._kept()
        for batch in reversed(kept):
            end -= batch[KEPT_COUNT]
            yield batch, end

    def _numbered(self) -> list[tuple[Kept, int]]:
        """(kept batch, id of its first event), oldest first."""
        numbered = list(self._numbered_backwards())
        numbered.reverse()
        return numbered

    def _events(self, kept: Kept, first: int) -> list[StoredEvent]:
        return [StoredEvent.from_row(first + offset, row) for offset, row in enumerate(rows(kept_batch(kept)))]

    def scan(self, after: int = 0) -> Iterator[StoredEvent]:
        for kept, first in self._numbered():
            if first + kept[KEPT_COUNT] - 1 > after:
                yield from (event for event in self._events(kept, first) if event.id > after)

    def backwards(self, before: int | None = None, after: int = 0) -> Iterator[StoredEvent]:
        for kept, first in self._numbered_backwards():
            if first + kept[KEPT_COUNT] - 1 <= after:
                return
            if before is not None and first >= before:
                continue
            for event in reversed(self._events(kept, first)):
                if event.id <= after:
                    return
                if before is None or event.id < before:
                    yield event

    def rate_counts(self, query: Query, bucket: int, by: str) -> RateCounts:
        if query.filters_events or self._labels_matter(query, by):
            return super().rate_counts(query, bucket, by)
        # Where a batch came from, when it arrived and how many events it holds
        # are the kept tuple's: no event is decoded, and only batches after
        # ``query.after`` are looked at.
        after, before = query.after or 0, query.before
        counts: dict[tuple[int, str], int] = {}
        for kept, first in self._numbered_backwards():
            last = first + kept[KEPT_COUNT] - 1
            if last <= after:
                break
            api, source, at, _, dataset, service = kept[:6]
            low, high = max(first, after + 1), last if before is None else min(last, before - 1)
            if high < low or not query.matches_origin(api, source, dataset, service):
                continue
            name = {"api": api, "source": source, "dataset": dataset, "service": service}[by] or ""
            key = (int(at.timestamp()) // bucket * bucket, name)
            counts[key] = counts.get(key, 0) + high - low + 1
        return [(at, name, count) for (at, name), count in counts.items()]

    def _labels_matter(self, query: Query, by: str) -> bool:
        """Whether counting by or filtering on the service needs the events: a
        batch whose events name their own (Baselime's) holds more than one."""
        by_service = by == "service" or query.service is not None
        return by_service and any(kept[-1] for kept in self._kept()[0])  # its last field: labels_in_events

    def cursor(self) -> int:
        return self._kept()[1] - 1

    def fingerprint(self) -> Hashable:
        return self.sink.changes()
