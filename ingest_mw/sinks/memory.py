"""A sink that keeps batches in a list: for tests and benchmarks."""

from __future__ import annotations

import threading

from ..batch import Batch, Event

__all__ = ["MemorySink"]


class MemorySink:
    """Keeps every batch in :attr:`batches` (unbounded: not for production)."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self._lock = threading.Lock()

    def __call__(self, batch: Batch) -> None:
        with self._lock:
            self.batches.append(batch)

    async def acall(self, batch: Batch) -> None:
        """Store ``batch`` from async code, on the event loop: an append never
        blocks, so the ASGI adapter needs no worker thread for this sink (see
        :func:`~ingest_mw.sinks.as_async`). A subclass whose ``__call__`` may
        block sets ``acall = None`` to be run in a thread again."""
        self.__call__(batch)

    @property
    def events(self) -> list[Event]:
        """Every stored event, in arrival order."""
        return [event for batch in self.batches for event in batch.events]

    def clear(self) -> None:
        with self._lock:
            self.batches.clear()

    def close(self) -> None:
        """Nothing to release."""
