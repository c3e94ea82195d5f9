"""The ingest-rate chart's numbers: events per bucket of reception time, by a column.

:class:`RateCache` keeps the counts between a page's refreshes and counts
only the rows stored since the last one: a chart over a busy hour is a
count of a few seconds' rows, not of the hour's millions. The range is of
reception time (``received_at``): an ingest rate is when events arrived,
and ids grow with it, so the rows of a range are an id range.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from .base import RateCounts, Reader
from .query import Query

__all__ = ["MAX_BUCKETS", "RATE_SERIES", "RateCache", "bucket_seconds", "chart_range", "check_series", "rate_series"]

#: Chart buckets from a minute up: the smallest that keeps a range within
#: :data:`MAX_BUCKETS` bars (an hour is 60 one-minute bars).
_BUCKET_STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)
MAX_BUCKETS = 180
#: The series a chart is split by: a stored column.
RATE_SERIES = ("source", "api", "dataset", "service")
#: The chart's range when none is given.
DEFAULT_RANGE = timedelta(hours=1)


def chart_range(query: Query) -> tuple[datetime, datetime]:
    """The ``since`` .. ``until`` a chart of ``query`` covers: its own, or the
    last :data:`DEFAULT_RANGE` up to now."""
    until = query.until or datetime.now(UTC)
    return query.since or until - DEFAULT_RANGE, until


def check_series(by: str) -> str:
    """``by``, one of :data:`RATE_SERIES`, or the ``ValueError`` that names them."""
    if by not in RATE_SERIES:
        raise ValueError(f"by must be one of {', '.join(RATE_SERIES)}, not {by!r}")
    return by


def bucket_seconds(since: datetime, until: datetime) -> int:
    span = (until - since).total_seconds()
    for step in _BUCKET_STEPS:
        if span / step <= MAX_BUCKETS:
            return step
    return _BUCKET_STEPS[-1]


def rate_series(counts: RateCounts, *, since: datetime, until: datetime, bucket: int) -> dict[str, Any]:
    """Counts per bucket and series as the chart draws them: every bucket of
    ``[since, until)`` present (zero where nothing arrived), series by name."""
    start = int(since.timestamp()) // bucket * bucket
    # Up to the bucket ``until`` falls in, by its fraction of a second too: a
    # chart asked for at 12:03:00.4 holds the events of 12:03:00.2.
    size = max(1, math.ceil((until.timestamp() - start) / bucket))
    series: dict[str, list[int]] = {}
    for at, name, count in counts:
        index = (at - start) // bucket
        if 0 <= index < size:
            series.setdefault(name, [0] * size)[index] += count
    return {"start": start, "bucket": bucket, "buckets": size, "series": series}


class _Counted:
    """What one chart (filters, series, bucket) has counted: the events
    received since ``since``, up to the cursor ``last_id``, per (bucket
    start, series name)."""

    __slots__ = ("since", "last_id", "counts")

    def __init__(self, since: datetime, cursor: int) -> None:
        self.since = since
        self.last_id = cursor
        self.counts: dict[tuple[int, str], int] = {}

    def add(self, counts: Iterable[tuple[int, str, int]]) -> None:
        for at, name, count in counts:
            self.counts[at, name] = self.counts.get((at, name), 0) + count

    def forget_before(self, since: datetime, bucket: int) -> None:
        """Drop the buckets before the one ``since`` falls in (the chart has moved on)."""
        start = int(since.timestamp()) // bucket * bucket
        for key in [key for key in self.counts if key[0] < start]:
            del self.counts[key]
        self.since = max(self.since, since)


class RateCache:
    """Ingest-rate charts of ``reader``, each counted once and then kept up to
    date with the rows stored since (at most ``charts`` kept, the least
    recently asked for dropped). Safe from any thread."""

    def __init__(self, reader: Reader, *, charts: int = 16) -> None:
        if charts < 1:
            raise ValueError("charts must be at least 1")
        self.reader = reader
        self.charts = charts
        self._counted: dict[tuple[Any, ...], _Counted] = {}
        self._lock = threading.Lock()

    def rate(self, query: Query, *, by: str = "source") -> dict[str, Any]:
        """Events per bucket received in ``query.since`` .. ``query.until``
        (default: the last hour up to now) matching its other filters, by the
        column ``by``: a :func:`rate_series` and ``"by"``."""
        check_series(by)
        since, until = chart_range(query)
        bucket = bucket_seconds(since, until)
        filters = query.but(since=None, until=None, before=None, after=None, limit=0)
        key = (filters, by, bucket)
        reader = self.reader
        with self._lock:
            counted = self._counted.pop(key, None)
            if counted is None or since < counted.since:  # new, or asked for further back
                counted = _Counted(since, reader.cursor_at(since))
            top = reader.cursor()
            if top > counted.last_id:
                counted.add(reader.rate_counts(filters.but(after=counted.last_id, before=top + 1), bucket, by))
                counted.last_id = top
            counted.forget_before(since, bucket)
            self._counted[key] = counted  # the most recently asked for last
            while len(self._counted) > self.charts:
                del self._counted[next(iter(self._counted))]
            counts = [(at, name, count) for (at, name), count in counted.counts.items()]
        return {**rate_series(counts, since=since, until=until, bucket=bucket), "by": by}
