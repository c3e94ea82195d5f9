"""What a reader is asked for (:class:`Query`) and what it hands back (:class:`StoredEvent`).

Pure values and the one definition of each filter: the in-memory readers
match with :meth:`Query.matches`, the SQL readers translate the same fields
(see :mod:`ingest_mw.read.sql`). No I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ..sinks.record import COLUMNS, iso_utc
from ..timestamps import from_iso

__all__ = [
    "LEVEL_FIELDS",
    "MESSAGE_FIELDS",
    "Query",
    "StoredEvent",
    "first_text",
    "level_message_rest",
    "parse_since",
]

#: Where an event says its level and its message, first found wins: Better
#: Stack's and Baselime's documented fields, the common alternatives, then
#: an OTLP log record's (``severity_text``, ``body``).
LEVEL_FIELDS = ("level", "severity", "severity_text")
MESSAGE_FIELDS = ("message", "msg", "body")


def first_text(data: Mapping[str, Any], fields: tuple[str, ...]) -> str | None:
    """The first of ``fields`` present in ``data`` and not null, as text."""
    for name in fields:
        value = data.get(name)
        if value is not None:
            return value if isinstance(value, str) else orjson.dumps(value).decode()
    return None


def level_message_rest(data: Mapping[str, Any]) -> tuple[str | None, str | None, dict[str, Any]]:
    """An event as a log line shows it: its level, its message, and the rest
    of its fields (without those two and ``dt``, which the line shows as its time)."""
    level_key = next((name for name in LEVEL_FIELDS if data.get(name) is not None), None)
    message_key = next((name for name in MESSAGE_FIELDS if data.get(name) is not None), None)
    rest = {key: value for key, value in data.items() if key not in (level_key, message_key, "dt")}
    return first_text(data, LEVEL_FIELDS), first_text(data, MESSAGE_FIELDS), rest


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One stored event as a sink keeps it: the :data:`~ingest_mw.sinks.record.COLUMNS`
    (times as fixed-width ISO text in UTC, so text order is time order), the
    event object as JSON text, and ``id``: its place in the sink, increasing
    in arrival order (the row id, or a byte offset in a JSON Lines file)."""

    id: int
    received_at: str
    dt: str
    api: str
    source: str
    dataset: str | None
    service: str | None
    namespace: str | None
    data_json: bytes

    @classmethod
    def from_row(cls, event_id: int, row: Sequence[Any]) -> StoredEvent:
        """From the :data:`~ingest_mw.sinks.record.COLUMNS` values, ``data`` as JSON text."""
        received_at, dt, api, source, dataset, service, namespace, data = row
        data_json = data.encode() if isinstance(data, str) else bytes(data)
        return cls(event_id, received_at, dt, api, source, dataset, service, namespace, data_json)

    @property
    def data(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.data_json)
        return value

    def row(self, *, with_id: bool = True) -> dict[str, Any]:
        """The stored row as JSON-ready values (``data`` kept as JSON text inside);
        ``with_id=False`` for storage that keeps no id (a JSON Lines record)."""
        record: dict[str, Any] = {"id": self.id} if with_id else {}
        for name in COLUMNS[:-1]:
            record[name] = getattr(self, name)
        record["data"] = orjson.Fragment(self.data_json)
        return record

    def row_json(self, *, with_id: bool = True) -> bytes:
        return orjson.dumps(self.row(with_id=with_id))


_AGO = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, *, now: datetime | None = None, naive_utc: bool = False) -> datetime:
    """``"10m"``, ``"2h"``, ``"1d"`` (that long ago) or an ISO 8601 time, as an aware datetime.

    A time without an offset is local time, or UTC when ``naive_utc``.
    Raises ``ValueError`` with a message that says what is accepted.
    """
    match = _AGO.fullmatch(text)
    if match:
        now = now or datetime.now(UTC)
        return now - timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2].lower()])
    value = from_iso(text.strip())  # as the events' own times are read
    if value is None:
        raise ValueError(
            f"cannot read the time {text!r}: use a duration such as 30s, 10m, 2h, 7d or an ISO time"
            " such as 2026-12-01T13:30 or 2026-12-01T13:30:00+00:00"
        )
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC) if naive_utc else value.astimezone()
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Query:
    """Which stored events to read: every given field must match.

    ``since``/``until`` bound the event time (``dt``), ``until`` excluded;
    ``api``, ``source``, ``dataset`` and ``service`` match exactly;
    ``levels`` is a set of levels (any case; ``"error,warn"`` is two, as
    ``--level`` and the page's ``level`` parameter take them); ``text`` is found anywhere in
    the event's JSON text, ignoring ASCII case, as ``grep -i`` would.
    ``before`` and ``after`` (event ids, both excluded) bound the events by
    arrival: ``before`` pages backwards, ``after`` keeps only what came since
    a cursor; ``limit`` counts events (0: no limit).
    """

    since: datetime | None = None
    until: datetime | None = None
    api: str | None = None
    source: str | None = None
    dataset: str | None = None
    service: str | None = None
    levels: frozenset[str] = field(default_factory=frozenset)
    text: str | None = None
    before: int | None = None
    after: int | None = None
    limit: int = 100
    # Derived once, in __post_init__ (matches() runs for every event a reader scans):
    _since_text: str | None = field(default=None, init=False, repr=False, compare=False)
    _until_text: str | None = field(default=None, init=False, repr=False, compare=False)
    _text_lower: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.limit < 0:
            raise ValueError("limit must be 0 (no limit) or more")
        # One normal form, so every reader compares the same way.
        levels = frozenset(part.strip().lower() for level in self.levels for part in level.split(",") if part.strip())
        object.__setattr__(self, "levels", levels)
        if self.text is not None and not self.text:
            object.__setattr__(self, "text", None)
        object.__setattr__(self, "_since_text", iso_utc(self.since.astimezone(UTC)) if self.since else None)
        object.__setattr__(self, "_until_text", iso_utc(self.until.astimezone(UTC)) if self.until else None)
        object.__setattr__(self, "_text_lower", None if self.text is None else self.text.encode().lower())

    def but(self, **changes: Any) -> Query:
        return replace(self, **changes)

    def up_to(self, cursor: int) -> Query:
        """This query for the events up to ``cursor`` (a reader's :meth:`cursor`)
        only: what a page or ``tail`` shows before it follows from there."""
        before = cursor + 1
        return self if self.before is not None and self.before <= before else replace(self, before=before)

    @property
    def since_text(self) -> str | None:
        """``since`` as the stored ``dt`` text (fixed-width ISO UTC), which compares as the time does."""
        return self._since_text

    @property
    def until_text(self) -> str | None:
        return self._until_text

    @property
    def filters_events(self) -> bool:
        """Whether a filter looks inside the events (time, level, text), not
        only at where a batch came from."""
        return self.since is not None or self.until is not None or bool(self.levels) or self.text is not None

    def matches_origin(self, api: str, source: str, dataset: str | None, service: str | None) -> bool:
        """Whether events from there pass the ``api``, ``source``, ``dataset`` and ``service`` filters."""
        return (
            (self.api is None or api == self.api)
            and (self.source is None or source == self.source)
            and (self.dataset is None or dataset == self.dataset)
            and (self.service is None or service == self.service)
        )

    def matches(self, event: StoredEvent) -> bool:
        """Whether ``event`` passes every filter but the paging ones."""
        since, until = self._since_text, self._until_text
        if since is not None and event.dt < since:
            return False
        if until is not None and event.dt >= until:
            return False
        if not self.matches_origin(event.api, event.source, event.dataset, event.service):
            return False
        text = self._text_lower
        if text is not None and text not in event.data_json.lower():
            return False
        if self.levels:
            level = first_text(event.data, LEVEL_FIELDS)
            if level is None or level.lower() not in self.levels:
                return False
        return True
