"""Read a :class:`~ingest_mw.sinks.JSONMemorySink` from inside its process (``memory://``)."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator

from ..batch import Batch
from ..sinks.memory import _COUNT, JSONEvents, JSONMemorySink, _Kept
from ..sinks.record import rows
from .base import ScanReader
from .query import StoredEvent

__all__ = ["MemoryReader"]


class MemoryReader(ScanReader):
    """Read the batches ``sink`` keeps, each event numbered in arrival order.

    The sink keeps no ids: the reader numbers batches the first time it
    sees them, and finds them again by identity (it holds the kept tuples it
    numbered, never more than the sink keeps). It looks at the sink's deque
    under the sink's lock, for as long as a list copy takes.
    """

    @classmethod
    def for_sink(cls, sink: JSONMemorySink) -> MemoryReader:
        return cls(sink)

    def __init__(self, sink: JSONMemorySink) -> None:
        self.sink = sink
        self._numbered: list[tuple[_Kept, int]] = []  # (kept batch, id of its first event)
        self._next = 1
        self._lock = threading.Lock()

    def _sync(self) -> list[tuple[_Kept, int]]:
        with self._lock:
            with self.sink._lock:
                kept = list(self.sink._batches)
            known = self._numbered
            if known and kept and kept[-1] is known[-1][0]:  # nothing new: drop what the sink dropped
                start = next((i for i, (batch, _) in enumerate(known) if batch is kept[0]), 0)
                self._numbered = known[start:]
                return self._numbered
            first_ids = {id(batch): first for batch, first in known}
            numbered = []
            for batch in kept:
                first = first_ids.get(id(batch))
                if first is None:
                    first = self._next
                    self._next += batch[_COUNT]
                numbered.append((batch, first))
            self._numbered = numbered
            return numbered

    def scan(self, after: int = 0) -> Iterator[StoredEvent]:
        for kept, first in self._sync():
            api, source, at, client, dataset, service, namespace, text, count, rule = kept
            if first + count <= after + 1:
                continue
            batch = Batch(api, source, at, JSONEvents(text, count, rule, at), client, dataset, service, namespace)
            for offset, row in enumerate(rows(batch)):
                if first + offset > after:
                    yield StoredEvent.from_row(first + offset, row)

    def cursor(self) -> int:
        self._sync()
        return self._next - 1

    def fingerprint(self) -> Hashable:
        batches = self.sink._batches
        return len(batches), id(batches[-1]) if batches else None
