"""The flat record both file sinks write: one row per event."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from operator import methodcaller

from ..batch import Batch, event_json

__all__ = ["COLUMNS", "iso_utc", "rows"]

#: The columns of the SQLite ``events`` table and the keys of a JSON Lines record.
COLUMNS = ("received_at", "dt", "api", "source", "dataset", "service", "namespace", "data")


#: ISO 8601 in UTC, fixed width (microseconds always shown) so text order is
#: time order. A methodcaller, so that ``map(iso_utc, times)`` runs in C.
iso_utc: Callable[[datetime], str] = methodcaller("isoformat", timespec="microseconds")


def rows(batch: Batch) -> Iterator[tuple[str | None, ...]]:
    """The batch as rows in :data:`COLUMNS` order, the event as JSON text."""
    received = iso_utc(batch.received_at)
    head = (batch.api, batch.source, batch.dataset, batch.service, batch.namespace)
    for event in batch.events:
        yield (received, iso_utc(event.time), *head, event_json(event.data).decode())
