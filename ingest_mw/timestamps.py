"""Event times: parse a ``dt`` value and decide the time an event is stored under.

The Better Stack contract (``Sending timestamps``): ``dt`` may be UNIX time in
seconds, milliseconds or nanoseconds (we also take microseconds and floats),
an RFC 3339 / ISO 8601 string, or a MessagePack timestamp. An unparsable value
is kept in the event as sent and the reception time becomes the event time;
events may be at most 15 minutes in the past, and an older one is treated the
same way as an unparsable one (stored under its reception time, original
value kept) so that nothing a client sends is silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["EventTimes", "from_iso", "parse_dt", "UNIT_THRESHOLDS"]

_UTC = UTC
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
#: ``_MICROSECOND * n``: exact like ``timedelta(microseconds=n)``, and cheaper
#: (no keyword arguments to normalise).
_MICROSECOND = timedelta(microseconds=1)

#: The unit of a numeric ``dt`` is decided by its magnitude. Below 1e11 it is
#: seconds (1e11 s is the year 5138, 1e11 ms is only 1973), below 1e14
#: milliseconds, below 1e17 microseconds, and nanoseconds from there on.
UNIT_THRESHOLDS: tuple[tuple[float, float], ...] = (
    (1e11, 1.0),
    (1e14, 1e3),
    (1e17, 1e6),
)
_NANOSECONDS = 1e9


def _from_number(value: int | float, divisor: float | None = None) -> datetime | None:
    """``value`` in units of ``1/divisor`` second since the epoch; the unit
    decided by magnitude when ``divisor`` is ``None``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if divisor is None:
        magnitude = abs(value)
        divisor = _NANOSECONDS
        for bound, unit in UNIT_THRESHOLDS:
            if magnitude < bound:
                divisor = unit
                break
    try:
        if isinstance(value, int):
            # Integer arithmetic keeps nanosecond inputs exact to the microsecond.
            micros = value * 1_000_000 // int(divisor)
            return _EPOCH + _MICROSECOND * micros
        return _EPOCH + timedelta(seconds=value / divisor)
    except OverflowError:
        return None


def _from_units(value: Any, units_per_second: int) -> datetime | None:
    """A number of ``units_per_second`` since the epoch; anything else as :func:`parse_dt` reads it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return parse_dt(value)  # a string or a datetime is read as ever
    return _from_number(value, units_per_second)


def _from_string(value: str) -> datetime | None:
    parsed = from_iso(value)
    return None if parsed is None else _as_utc(parsed)


def from_iso(value: str) -> datetime | None:
    """An RFC 3339 / ISO 8601 time as ``datetime.fromisoformat`` (3.11+) reads it
    ("T" or a space, "Z" or an offset, any number of fraction digits, kept
    to the microsecond), a lower-case "z" too (RFC 3339 section 5.6 lets
    "T" and "Z" be lower case; ``fromisoformat`` takes only the "t");
    ``None`` for anything else."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        if not value.endswith("z"):
            return None
    try:
        return datetime.fromisoformat(value[:-1] + "Z")
    except ValueError:
        return None


def _as_utc(value: datetime) -> datetime | None:
    # A time without an offset is taken as UTC, the only reading that does not
    # depend on the server's own time zone.
    tz = value.tzinfo
    if tz is _UTC:  # "Z" and "+00:00" parse to this one object: nothing to convert
        return value
    if tz is None:
        return value.replace(tzinfo=_UTC)
    try:
        return value.astimezone(_UTC)
    except OverflowError:  # "0001-01-01T00:00:00+01:00" is before year 1 in UTC: no time
        return None


def parse_dt(value: Any) -> datetime | None:
    """Parse one ``dt`` value into an aware UTC datetime, or ``None`` if it can't be."""
    if isinstance(value, str):
        return _from_string(value)
    if isinstance(value, bool):  # bool is an int subclass, never a time
        return None
    if isinstance(value, (int, float)):
        return _from_number(value)
    if isinstance(value, datetime):  # MessagePack timestamps decode to these
        return _as_utc(value)
    return None


class EventTimes:
    """Decide each event's stored time from its time field and the reception time.

    ``fields`` are looked up in order (Better Stack: ``dt``; Baselime:
    ``timestamp`` then ``dt``). ``max_past`` is how far before reception an
    event time may lie; ``None`` accepts any past time. Future times are kept
    as sent: the contract puts no bound on them. ``units_per_second`` fixes
    the unit of a numeric time (OTLP's ``time_unix_nano``: ``10**9``, however
    small the number); ``None`` decides it by magnitude (:data:`UNIT_THRESHOLDS`).
    """

    def __init__(
        self,
        *,
        fields: Sequence[str] = ("dt",),
        max_past: timedelta | None = timedelta(minutes=15),
        units_per_second: int | None = None,
    ) -> None:
        if not fields:
            raise ValueError("EventTimes needs at least one field name")
        if units_per_second is not None and (
            isinstance(units_per_second, bool) or not isinstance(units_per_second, int) or units_per_second <= 0
        ):
            raise ValueError(f"units_per_second must be a positive int or None, not {units_per_second!r}")
        self.fields = tuple(fields)
        self.max_past = max_past
        self.units_per_second = units_per_second

    def event_time(self, event: Mapping[str, Any], received_at: datetime) -> datetime:
        """The time ``event`` is stored under; ``received_at`` when it has no usable time."""
        return self.event_times((event,), received_at)[0]

    def event_times(self, events: Iterable[Mapping[str, Any]], received_at: datetime) -> list[datetime]:
        """:meth:`event_time` of each of ``events`` (one request's batch), in order.

        The same rule, written as one loop because it runs once per event: the
        ``max_past`` bound is computed once, and an RFC 3339 string (what
        clients send most) is parsed inline rather than through
        :func:`parse_dt`.
        """
        cutoff = None if self.max_past is None else received_at - self.max_past
        first, *others = self.fields
        fromisoformat = datetime.fromisoformat
        units = self.units_per_second
        times: list[datetime] = []
        append = times.append
        for event in events:
            value = event.get(first)
            if value is None:
                for name in others:
                    value = event.get(name)
                    if value is not None:
                        break
            if value is None:
                append(received_at)
                continue
            parsed: datetime | None
            if type(value) is str:
                try:
                    parsed = fromisoformat(value)
                except ValueError:
                    parsed = from_iso(value)  # (its lower-case "z", on the path of a miss only)
                    if parsed is None:
                        append(received_at)
                        continue
                if parsed.tzinfo is not _UTC:
                    parsed = _as_utc(parsed)
                    if parsed is None:
                        append(received_at)
                        continue
            elif units is not None and type(value) is int:
                # A whole number in a fixed unit (OTLP's nanoseconds), inline: every OTLP record has one.
                try:
                    parsed = _EPOCH + _MICROSECOND * (value * 1_000_000 // units)
                except OverflowError:
                    append(received_at)
                    continue
            else:
                parsed = parse_dt(value) if units is None else _from_units(value, units)
                if parsed is None:
                    append(received_at)
                    continue
            append(received_at if cutoff is not None and parsed < cutoff else parsed)
        return times
