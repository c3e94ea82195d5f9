"""Sinks that keep events in the process's memory.

:class:`MemorySink` keeps every batch exactly as the hook was given it: for
tests, which look at what a hook received. :class:`JSONMemorySink` keeps the
newest events as JSON text: for a server that runs for days (``memory://``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Final, overload

from ..batch import Batch, Event, Events, TimesRule, events_json, load_events_json
from .base import ON_LOOP_EVENTS, made_off_the_loop_if_large

__all__ = ["JSONEvents", "JSONMemorySink", "KEPT_COUNT", "Kept", "MemorySink", "ON_LOOP_EVENTS", "kept_batch"]


class MemorySink:
    """Keeps every batch in :attr:`batches`, oldest first, as it was given."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def __call__(self, batch: Batch) -> None:
        self.batches.append(batch)

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
        self.batches.clear()

    def check(self) -> None:
        """Memory can always take a batch: nothing to prove."""

    def close(self) -> None:
        """Nothing to release."""


class _GivenTimes:
    """The times of events decided before they were kept, whatever they are read back as."""

    __slots__ = ("times",)

    def __init__(self, times: list[datetime]) -> None:
        self.times = times

    def event_times(self, events: list[dict[str, Any]], received_at: datetime) -> list[datetime]:
        return list(self.times)  # a copy: whoever reads them may change the list


class JSONEvents(Sequence[Event]):
    """A kept batch's events as one JSON array (:attr:`json`), read back on each access.

    ``rule`` gives their times when they are read: the API's rule, with the
    batch's reception time, applied to the events read back (see
    :class:`~ingest_mw.batch.Events`); or times fixed when the batch was kept.
    """

    __slots__ = ("json", "_count", "_rule", "_received_at")

    def __init__(self, json: bytes, count: int, rule: TimesRule, received_at: datetime) -> None:
        self.json = json
        self._count = count
        self._rule = rule
        self._received_at = received_at

    def load(self) -> Events:
        """The events, decoded from :attr:`json`."""
        return Events(load_events_json(self.json), self._rule, self._received_at)

    @property
    def data(self) -> list[dict[str, Any]]:
        return self.load().data

    @property
    def times(self) -> list[datetime]:
        return self.load().times

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...
    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        return self.load()[index]

    # Sequence's own versions of these index one event at a time, and every
    # index decodes the whole array: decode once instead.
    def __iter__(self) -> Iterator[Event]:
        return iter(self.load())

    def __reversed__(self) -> Iterator[Event]:
        return iter(list(self.load())[::-1])

    def __contains__(self, value: object) -> bool:
        return value in list(self.load())

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        return list(self.load()).index(value, start, len(self) if stop is None else stop)

    def count(self, value: Any) -> int:
        return list(self.load()).count(value)

    def __eq__(self, other: object) -> bool:
        return self.load() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"JSONEvents({self._count} events, {len(self.json)} bytes)"


#: A kept batch: its fields but ``events`` (api, source, received_at, client,
#: dataset, service, namespace), then its events' JSON text, their number,
#: the rule for their times (the API's own) and its ``labels_in_events``.
#: One plain tuple per batch beside the text and the reception time: every
#: object kept per batch is one more to free, cache-cold, when the batch is
#: dropped, and one more for the cyclic GC to walk until then.
Kept = tuple[str, str, datetime, str | None, str | None, str | None, str | None, bytes, int, TimesRule, bool]
KEPT_COUNT: Final = 8  # the index of the number of events in a Kept


def kept_batch(kept: Kept) -> Batch:
    """The :class:`~ingest_mw.batch.Batch` a kept tuple stands for (its events :class:`JSONEvents`)."""
    api, source, at, client, dataset, service, namespace, text, count, rule, labels = kept
    return Batch(api, source, at, JSONEvents(text, count, rule, at), client, dataset, service, namespace, labels)


class JSONMemorySink:
    """Keeps the newest ``max_events`` events in memory, as JSON text: ``memory://``.

    Each batch is kept as one JSON array, not as the decoded objects, and
    read back as a :class:`~ingest_mw.batch.Batch` holding :class:`JSONEvents`:
    a server that kept the objects would hold about ten per event, scattered
    over the heap, and free thousands of cache-cold ones whenever it drops the
    oldest batch; one bytes object per batch takes about a fifth of the memory
    and is dropped at once.

    Read back, events are what the file sinks store: JSON types (MessagePack
    binary becomes text, as in :func:`~ingest_mw.batch.event_json`), under the
    times the API's rule gives the events as sent. ``max_events`` (default
    10,000, so that a server's memory stays bounded) counts whole batches: the
    oldest are dropped while more are kept, but the newest batch is always
    kept whole.
    """

    def __init__(self, *, max_events: int = 10_000) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.max_events = max_events
        self._batches: deque[Kept] = deque()
        self._kept = 0  # events in _batches
        self._stored = 0  # batches ever kept: a reader's sign that one was
        self._lock = threading.Lock()

    def __call__(self, batch: Batch) -> None:
        events = batch.events
        received_at = batch.received_at
        rule: TimesRule
        if isinstance(events, Events) and events.received_at == received_at:
            data, rule = events.data, events.rule
            decided = events.times_if_decided
            if decided is not None:
                # Read by a hook before this one, which may have changed the
                # objects' time fields since: the times stay as they were read.
                rule = _GivenTimes(list(decided))
        else:
            # A batch a host built itself, one this sink kept, or events that
            # decide with another reception time than the batch's: the times are
            # taken as they are now.
            pairs = list(events)
            data = [event_data for _, event_data in pairs]
            rule = _GivenTimes([time for time, _ in pairs])
        text, as_sent = events_json(data)
        if not as_sent:
            # Read back, MessagePack binary and the like would be other values:
            # the times are decided now, from the events as sent.
            rule = _GivenTimes(rule.event_times(data, received_at))
        count = len(data)
        kept = (
            batch.api,
            batch.source,
            received_at,
            batch.client,
            batch.dataset,
            batch.service,
            batch.namespace,
            text,
            count,
            rule,
            batch.labels_in_events,
        )
        batches = self._batches
        with self._lock:
            batches.append(kept)
            self._stored += 1
            total = self._kept + count
            while total > self.max_events and len(batches) > 1:
                total -= batches.popleft()[KEPT_COUNT]
            self._kept = total

    async def acall(self, batch: Batch) -> None:
        """Store ``batch`` from async code: on the loop up to
        :data:`ON_LOOP_EVENTS` events, in a worker thread beyond."""
        await made_off_the_loop_if_large(self.__call__, batch)

    def kept(self) -> list[Kept]:
        """A copy of the kept tuples, oldest first (:func:`kept_batch` makes each a
        :class:`~ingest_mw.batch.Batch`): what a reader looks at, without
        decoding a batch it does not need."""
        with self._lock:
            return list(self._batches)

    def changes(self) -> tuple[int, int]:
        """How many batches are kept, and how many were ever kept: what changes
        whenever one is kept or the sink is cleared, for a reader to tell that
        without a copy (an object's ``id()`` would not: a batch made after the
        newest was dropped may take its address)."""
        with self._lock:
            return len(self._batches), self._stored

    @property
    def batches(self) -> list[Batch]:
        """The kept batches, oldest first, made anew on each read; their
        ``events`` are :class:`JSONEvents`."""
        return [kept_batch(one) for one in self.kept()]

    @property
    def events(self) -> list[Event]:
        """Every kept event, in arrival order (decoded now)."""
        return [event for batch in self.batches for event in batch.events]

    def clear(self) -> None:
        with self._lock:
            self._batches.clear()
            self._kept = 0

    def check(self) -> None:
        """Memory can always take a batch (the oldest are dropped to make room): nothing to prove."""

    def close(self) -> None:
        """Nothing to release."""
