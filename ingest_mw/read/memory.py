"""Read a :class:`~ingest_mw.sinks.JSONMemorySink` from inside its process (``memory://``)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable, Iterator

from ..batch import Batch
from ..sinks.memory import _COUNT, JSONEvents, JSONMemorySink, _Kept
from ..sinks.record import rows
from .base import RateCounts, ScanReader
from .query import Query, StoredEvent

__all__ = ["MemoryReader"]


class MemoryReader(ScanReader):
    """Read the batches ``sink`` keeps, each event numbered in arrival order.

    The sink keeps no ids: the reader numbers batches the first time it
    sees them, and finds them again by identity (it holds the kept tuples it
    numbered, never more than the sink keeps). It looks at the sink's deque
    under the sink's lock, from the newest end, only as far as what is new.
    """

    @classmethod
    def for_sink(cls, sink: JSONMemorySink) -> MemoryReader:
        return cls(sink)

    def __init__(self, sink: JSONMemorySink) -> None:
        self.sink = sink
        self._numbered: deque[tuple[_Kept, int]] = deque()  # (kept batch, id of its first event)
        self._next = 1
        self._lock = threading.Lock()

    def _sync(self) -> list[tuple[_Kept, int]]:
        """The kept batches with the id of each one's first event, oldest first,
        brought up to date in time proportional to what changed since."""
        with self._lock:
            numbered = self._numbered
            kept = self.sink._batches
            with self.sink._lock:
                newest = numbered[-1][0] if numbered else None
                new = []
                for batch in reversed(kept):
                    if batch is newest:
                        break
                    new.append(batch)
                else:  # the newest one numbered is gone too: every kept batch is new
                    numbered.clear()
                oldest = kept[0] if kept else None
                while numbered and numbered[0][0] is not oldest:  # dropped by the sink
                    numbered.popleft()
            for batch in reversed(new):
                numbered.append((batch, self._next))
                self._next += batch[_COUNT]
            return list(numbered)

    def _events(self, kept: _Kept, first: int) -> list[StoredEvent]:
        api, source, at, client, dataset, service, namespace, text, count, rule = kept
        batch = Batch(api, source, at, JSONEvents(text, count, rule, at), client, dataset, service, namespace)
        return [StoredEvent.from_row(first + offset, row) for offset, row in enumerate(rows(batch))]

    def scan(self, after: int = 0) -> Iterator[StoredEvent]:
        for kept, first in self._sync():
            if first + kept[_COUNT] - 1 > after:
                yield from (event for event in self._events(kept, first) if event.id > after)

    def backwards(self, before: int | None = None, after: int = 0) -> Iterator[StoredEvent]:
        # From the newest batch back, decoding only the batches it reaches.
        for kept, first in reversed(self._sync()):
            if first + kept[_COUNT] - 1 <= after:
                return
            if before is not None and first >= before:
                continue
            for event in reversed(self._events(kept, first)):
                if event.id <= after:
                    return
                if before is None or event.id < before:
                    yield event

    def rate_counts(self, query: Query, bucket: int, by: str) -> RateCounts:
        if query.filters_events:
            return super().rate_counts(query, bucket, by)
        # Where a batch came from, when it arrived and how many events it holds
        # are the kept tuple's: no event is decoded.
        after, before = query.after or 0, query.before
        counts: dict[tuple[int, str], int] = {}
        for kept, first in self._sync():
            api, source, at, _, dataset, service, _, _, count, _ = kept
            low, high = max(first, after + 1), first + count - 1 if before is None else min(first + count, before) - 1
            if high < low or not query.matches_origin(api, source, dataset, service):
                continue
            name = {"api": api, "source": source, "dataset": dataset, "service": service}[by] or ""
            key = (int(at.timestamp()) // bucket * bucket, name)
            counts[key] = counts.get(key, 0) + high - low + 1
        return [(at, name, count) for (at, name), count in counts.items()]

    def cursor(self) -> int:
        self._sync()
        return self._next - 1

    def fingerprint(self) -> Hashable:
        batches = self.sink._batches
        return len(batches), id(batches[-1]) if batches else None
