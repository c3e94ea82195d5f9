"""The flat record every storing sink writes: one row (line, entry) per event."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from operator import methodcaller
from typing import Any, TypeVar

import orjson

from ..batch import Batch, Event, event_json

__all__ = ["COLUMNS", "Run", "iso_utc", "iso_utc_each", "iso_utc_each_bytes", "label_runs", "rows", "times_and_data"]

#: The columns of the SQLite ``events`` table and the keys of a JSON Lines record.
COLUMNS = ("received_at", "dt", "api", "source", "dataset", "service", "namespace", "data")


#: ISO 8601 in UTC, fixed width (microseconds always shown) so text order is
#: time order. A methodcaller, so that ``map(iso_utc, times)`` runs in C.
iso_utc: Callable[[datetime], str] = methodcaller("isoformat", timespec="microseconds")


def times_and_data(events: Sequence[Event]) -> tuple[Sequence[datetime], Sequence[dict[str, Any]]]:
    """The events' times and objects, in order: an :class:`~ingest_mw.batch.Events`'
    own lists (no :class:`~ingest_mw.batch.Event` made per event), or those of a
    host's list of pairs."""
    times = getattr(events, "times", None)
    data = getattr(events, "data", None)
    if times is not None and data is not None:
        return times, data
    pairs = list(events)
    return [time for time, _ in pairs], [event_data for _, event_data in pairs]


#: Consecutive events of a batch that share their service and namespace:
#: ``(service, namespace, times, data)``.
Run = tuple[str | None, str | None, Sequence[datetime], Sequence[dict[str, Any]]]


def label_runs(batch: Batch) -> list[Run]:
    """The batch's events in runs of one service and namespace, in order, so that
    a sink writes each run's shared columns once. A batch whose events may
    name their own (``labels_in_events``, Baselime's) is one run unless some
    event does; any other batch is one run."""
    times, data = times_and_data(batch.events)
    if not batch.labels_in_events:
        return [(batch.service, batch.namespace, times, data)]
    labels = list(map(batch.labels, data))
    runs: list[Run] = []
    start = 0
    for index in range(1, len(labels) + 1):
        if index == len(labels) or labels[index] != labels[start]:
            service, namespace = labels[start]
            runs.append((service, namespace, times[start:index], data[start:index]))
            start = index
    return runs


#: The length of an aware time's :func:`iso_utc` text ("2024-05-01T12:00:00.000000+00:00").
_ISO_LENGTH = 32

_Text = TypeVar("_Text", str, bytes)


def iso_utc_each(times: Sequence[datetime]) -> list[str]:
    """:func:`iso_utc` of each time, by one orjson call for the whole list.

    orjson writes an aware time as ``isoformat`` does, but leaves the fraction
    out when it is zero: only those (and anything else not of the fixed
    width) are written again one by one.
    """
    return _fixed_width(orjson.dumps(times).decode()[2:-2].split('","'), times, iso_utc)


def iso_utc_each_bytes(times: Sequence[datetime]) -> list[bytes]:
    """:func:`iso_utc_each` as bytes, for a sink that writes bytes (no text made on the way)."""
    return _fixed_width(orjson.dumps(times)[2:-2].split(b'","'), times, _iso_utc_bytes)


def _iso_utc_bytes(time: datetime) -> bytes:
    return iso_utc(time).encode()


def _fixed_width(parts: list[_Text], times: Sequence[datetime], one: Callable[[datetime], _Text]) -> list[_Text]:
    """``parts``, orjson's text of each of ``times`` (no quote or comma inside a
    time), with those not of :func:`iso_utc`'s fixed width written by ``one``."""
    if len(parts) != len(times):
        return list(map(one, times))
    if set(map(len, parts)) != {_ISO_LENGTH}:  # counted in C
        return [part if len(part) == _ISO_LENGTH else one(time) for part, time in zip(parts, times)]
    return parts


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
