"""A sink that keeps batches in memory: for tests, benchmarks and trying things out."""

from __future__ import annotations

import threading

from ..batch import Batch, Event

__all__ = ["MemorySink"]


class MemorySink:
    """Keeps batches in :attr:`batches`, oldest first.

    ``max_events``: once more events than this are kept, the oldest batches
    are dropped, so a long-running server's memory stays bounded (the
    ``memory://`` sink URL keeps 10,000). ``None`` keeps everything, as a test
    wants.
    """

    def __init__(self, *, max_events: int | None = None) -> None:
        if max_events is not None and max_events < 1:
            raise ValueError("max_events must be at least 1, or None to keep everything")
        self.max_events = max_events
        self.batches: list[Batch] = []
        self._kept = 0
        self._lock = threading.Lock()

    def __call__(self, batch: Batch) -> None:
        with self._lock:
            self.batches.append(batch)
            self._kept += len(batch.events)
            if self.max_events is not None:
                while self._kept > self.max_events and len(self.batches) > 1:
                    self._kept -= len(self.batches.pop(0).events)

    async def acall(self, batch: Batch) -> None:
        """Store ``batch`` from async code, on the event loop: an append never
        blocks, so the ASGI adapter needs no worker thread for this sink (see
        :func:`~ingest_mw.sinks.as_async`). A subclass that overrides
        ``__call__`` is run in a thread again unless it defines ``acall`` too."""
        self.__call__(batch)

    @property
    def events(self) -> list[Event]:
        """Every stored event, in arrival order."""
        return [event for batch in self.batches for event in batch.events]

    def clear(self) -> None:
        with self._lock:
            self.batches.clear()
            self._kept = 0

    def close(self) -> None:
        """Nothing to release."""
