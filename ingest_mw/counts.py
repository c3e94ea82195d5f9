"""What the flow counts of the requests it serves, in plain numbers per API and thread.

An observer that needs totals, not each request (metrics: see
:class:`ingest_mw.metrics.PrometheusObserver`), gives the flow a
:class:`Tallies` as its ``tallies``, and the flow adds each request's facts
to this thread's :class:`Tally` of the request's API itself: no
:class:`~ingest_mw.observe.Observation` to fill and no hook to call, which
is most of what observing a request costs. The numbers are read, summed over
the threads, with :meth:`Tallies.totals`.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .admission import Admission

if TYPE_CHECKING:
    from .ratelimit import RateLimitDecision

__all__ = ["DURATION_BUCKETS", "Durations", "Tallies", "Tally"]

#: Buckets (seconds) of the storage and request duration histograms: an
#: SQLite commit takes a fraction of a millisecond, a remote database a few
#: milliseconds, a storage in trouble seconds; Prometheus' default buckets
#: start at 5 ms and would put every healthy store in the first one.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_FIRST_BOUND = DURATION_BUCKETS[0]


def _bucket(seconds: float) -> int:
    """The bucket of ``seconds`` past the first bound (:meth:`Tally.count` tests that one inline)."""
    return bisect_left(DURATION_BUCKETS, seconds)


class Durations:
    """Durations per bucket of :data:`DURATION_BUCKETS` (not cumulative; the
    last one past every bound) and their sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.sum = 0.0

    def add(self, other: Durations) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.sum += other.sum


class Tally:
    """One API's numbers as one thread adds them: plain numbers that only that
    thread writes, so counting takes no lock (a read from another thread sees
    a whole number, at most one request old).

    ``requests`` counts answers by status, ``refused`` events refused by
    reason (:data:`~ingest_mw.observe.EVENT_REFUSAL_REASONS`); ``storage``
    and ``duration`` are the time in the storage hook per batch and the time
    to decide each answer.
    """

    __slots__ = (
        "requests",
        "events_accepted",
        "refused",
        "wire_bytes",
        "body_bytes",
        "storage",
        "duration",
        "rate_limited",
        "storage_errors",
        "rate_limit_storage_errors",
    )

    def __init__(self) -> None:
        self.requests: dict[int, int] = {}
        self.refused: dict[str, int] = {}
        self.events_accepted = 0
        self.wire_bytes = 0
        self.body_bytes = 0
        self.storage = Durations()
        self.duration = Durations()
        self.rate_limited = 0
        self.storage_errors = 0
        self.rate_limit_storage_errors = 0

    def count(
        self,
        status: int,
        duration: float,
        body_bytes: int,
        wire_bytes: int,
        events_accepted: int,
        storage_seconds: float | None,
    ) -> None:
        """One request answered ``status`` after ``duration`` seconds, its body
        ``wire_bytes`` as sent and ``body_bytes`` decoded (0 if not read to its
        end); ``events_accepted`` stored in ``storage_seconds`` (``None``: the
        storage hook was not called)."""
        # Called for every request: the histograms are written inline (a call
        # fewer for each), and nearly every healthy request and store lands in
        # the first bucket, tested before bisecting.
        requests = self.requests
        requests[status] = requests.get(status, 0) + 1
        histogram = self.duration
        histogram.counts[0 if duration <= _FIRST_BOUND else _bucket(duration)] += 1
        histogram.sum += duration
        if body_bytes:
            self.body_bytes += body_bytes
            self.wire_bytes += wire_bytes
        if storage_seconds is not None:
            self.events_accepted += events_accepted
            histogram = self.storage
            histogram.counts[0 if storage_seconds <= _FIRST_BOUND else _bucket(storage_seconds)] += 1
            histogram.sum += storage_seconds

    def refuse(self, reason: str, events: int) -> None:
        """``events`` events refused for ``reason``."""
        refused = self.refused
        refused[reason] = refused.get(reason, 0) + events

    def rate_limit(self, decision: RateLimitDecision) -> None:
        """The rate limit refused a request, or its storage could not be reached."""
        if decision.unavailable:
            self.rate_limit_storage_errors += 1
        elif decision.refusal is not None:
            self.rate_limited += 1

    def store_failed(self, events: int) -> None:
        """The storage hook failed to store a batch of ``events``."""
        self.storage_errors += 1
        self.refuse("storage_error", events)

    def add(self, other: Tally) -> None:
        """Add ``other``'s numbers to these."""
        for name in self.__slots__:
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, dict):
                for key, count in theirs.copy().items():  # copy(): the other thread may be adding a key
                    mine[key] = mine.get(key, 0) + count
            elif isinstance(mine, Durations):
                mine.add(theirs)
            else:
                setattr(self, name, mine + theirs)


class Tallies:
    """Every thread's :class:`Tally` per API, and their totals; with the
    admissions whose in-flight figures go with them (:meth:`watch`).

    A server that starts a thread per request (wsgiref's, Django's
    runserver) would leave a tally per thread ever seen: those of threads
    that have ended are folded into one per API whenever a thread makes its
    first tally and at each reading, so their number stays that of live
    threads.
    """

    def __init__(self) -> None:
        #: ``local.by_api``: this thread's tallies by API.
        self.local = threading.local()
        self.admissions: list[Admission] = []
        self._lock = threading.Lock()
        self._live: list[tuple[str, Tally, threading.Thread]] = []
        self._ended: dict[str, Tally] = {}

    def watch(self, admissions: Sequence[Admission]) -> None:
        """Read the in-flight figures of ``admissions`` too (each once)."""
        for admission in admissions:
            if all(admission is not known for known in self.admissions):
                self.admissions.append(admission)

    def here(self, api: str) -> Tally:
        """This thread's tally of ``api`` (made on first use): the flow adds to it."""
        try:
            return self.local.by_api[api]  # type: ignore[no-any-return]
        except (AttributeError, KeyError):
            return self._new(api)

    def _new(self, api: str) -> Tally:
        by_api = self.local.__dict__.setdefault("by_api", {})
        tally = by_api[api] = Tally()
        with self._lock:
            self._fold_ended()
            self._live.append((api, tally, threading.current_thread()))
        return tally

    def forked(self) -> None:
        """In a forked child: a new lock (the parent's may have been held at the fork)."""
        self._lock = threading.Lock()

    def _fold_ended(self) -> None:
        """Fold the tallies of ended threads (which write no more) into ``_ended``; under the lock.

        Each fold makes a new tally: one that :meth:`totals` is still adding
        up, outside the lock, never changes under it."""
        live = []
        for api, tally, thread in self._live:
            if thread.is_alive():
                live.append((api, tally, thread))
            else:
                folded = Tally()
                ended = self._ended.get(api)
                if ended is not None:
                    folded.add(ended)
                folded.add(tally)
                self._ended[api] = folded
        self._live = live

    def totals(self) -> dict[str, Tally]:
        """Every thread's numbers summed, per API."""
        with self._lock:
            self._fold_ended()
            every = [(api, tally) for api, tally, _ in self._live] + list(self._ended.items())
        totals: dict[str, Tally] = {}
        for api, tally in every:
            totals.setdefault(api, Tally()).add(tally)
        return totals
