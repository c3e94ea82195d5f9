"""The flat record both file sinks write: one row per event."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from ..batch import Batch, event_json

__all__ = ["COLUMNS", "iso_utc", "rows"]

#: The columns of the SQLite ``events`` table and the keys of a JSON Lines record.
COLUMNS = ("received_at", "dt", "api", "source", "dataset", "service", "namespace", "data")


def iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC, fixed width (microseconds always shown) so text order is time order."""
    return value.isoformat(timespec="microseconds")


def rows(batch: Batch) -> Iterator[tuple[str | None, ...]]:
    """The batch as rows in :data:`COLUMNS` order, the event as JSON text."""
    received = iso_utc(batch.received_at)
    if not batch.labels_in_events:
        head = (batch.api, batch.source, batch.dataset, batch.service, batch.namespace)
        for event in batch.events:
            yield (received, iso_utc(event.time), *head, event_json(event.data).decode())
        return
    for event in batch.events:
        service, namespace = batch.labels(event.data)
        data = event_json(event.data).decode()
        yield (received, iso_utc(event.time), batch.api, batch.source, batch.dataset, service, namespace, data)
