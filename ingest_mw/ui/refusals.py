"""The refusals chart's numbers: requests and events refused per minute, sampled from the metrics.

The metrics are counters since the server started; :class:`RefusalHistory`
reads them every :data:`SAMPLE_SECONDS` (and whenever the page asks) and
keeps the growth per minute in a bounded ring, so a chart can show when
refusals happened. Only the page's app samples: a request costs nothing
beyond what the metrics observer already counts, and a server without the
page samples nothing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["HISTORY_MINUTES", "SAMPLE_SECONDS", "RefusalHistory", "metrics_refusals", "series_name"]

#: Seconds between two samples when no page asks: minutes stay exact to this.
SAMPLE_SECONDS = 10.0
#: Minutes kept (a week, the page's longest range); only minutes with refusals take room.
HISTORY_MINUTES = 7 * 24 * 60

#: What a refused request's status says, as the chart's legend names it.
_STATUS_REASONS = {
    "400": "invalid",
    "401": "credentials",
    "403": "credentials",
    "404": "no such route",
    "405": "method",
    "408": "body too slow",
    "411": "length required",
    "413": "too large",
    "415": "content type",
    "429": "rate limit",
    "431": "headers too large",
    "500": "server error",
    "503": "overload or storage",
}

Totals = dict[str, dict[str, int]]


def series_name(kind: str, key: str) -> str:
    """The legend's name of a counter: ``requests 401 credentials``, ``events invalid_json``."""
    if kind == "requests":
        reason = _STATUS_REASONS.get(key)
        return f"requests {key} {reason}" if reason else f"requests {key}"
    return f"events {key}"


def metrics_refusals() -> Totals | None:
    """The metrics' refusal counters, or ``None`` without them (no observer,
    or prometheus-client not installed)."""
    try:
        from ..metrics import refusal_totals
    except ImportError:
        return None
    return refusal_totals()


def _flat(totals: Totals) -> dict[str, int]:
    return {series_name(kind, key): count for kind, counts in totals.items() for key, count in counts.items()}


class RefusalHistory:
    """Refusals per minute since the first sample, from ``read`` (cumulative
    counters, :func:`metrics_refusals` by default). Safe from any thread."""

    def __init__(self, read: Callable[[], Totals | None] = metrics_refusals, *, minutes: int = HISTORY_MINUTES) -> None:
        if minutes < 1:
            raise ValueError("minutes must be at least 1")
        self.read = read
        self._lock = threading.Lock()
        self._last: dict[str, int] | None = None
        #: When sampling began (UNIX seconds): nothing before it is known.
        self.since: float | None = None
        self.available = False
        self._minutes: deque[tuple[int, dict[str, int]]] = deque(maxlen=minutes)

    def sample(self, now: float | None = None) -> None:
        """Read the counters and put their growth since the last sample into this minute."""
        totals = self.read()
        with self._lock:
            at = time.time() if now is None else now
            if totals is None:
                self.available = False
                return
            flat = _flat(totals)
            self.available = True
            if self._last is None:
                # The first sample is the baseline: when before it they were counted is unknown.
                self._last, self.since = flat, at
                return
            grown = {name: count - self._last.get(name, 0) for name, count in flat.items()}
            grown = {name: count for name, count in grown.items() if count > 0}
            self._last = flat
            if not grown:
                return
            minute = int(at) // 60 * 60
            if not self._minutes or self._minutes[-1][0] != minute:
                self._minutes.append((minute, {}))
            counts = self._minutes[-1][1]
            for name, count in grown.items():
                counts[name] = counts.get(name, 0) + count

    def counts(self, since: float, until: float) -> list[tuple[int, str, int]]:
        """``(minute start, series name, count)`` of the minutes in ``[since, until)``."""
        with self._lock:
            return [
                (minute, name, count)
                for minute, counts in self._minutes
                if since // 60 * 60 <= minute < until
                for name, count in counts.items()
            ]

    def scope(self) -> str:
        """Whose refusals these are: ``"server"`` (every worker's, in
        prometheus-client's multiprocess mode) or ``"process"`` (this one's)."""
        try:
            from ..metrics import counts_every_process
        except ImportError:  # no prometheus-client: nothing counted but this process's
            return "process"
        return "server" if counts_every_process() else "process"

    def describe(self) -> dict[str, Any]:
        return {"available": self.available, "since": self.since, "scope": self.scope()}
