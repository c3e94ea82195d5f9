"""What a storage hook receives: one :class:`Batch` per accepted request."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple, Protocol, overload

import orjson

__all__ = [
    "Batch",
    "Event",
    "Events",
    "TimesRule",
    "each_event_json",
    "event_json",
    "plain_event_json",
    "events_json",
    "load_events_json",
]


class Event(NamedTuple):
    """One stored event: its time (aware, UTC) and the object as the client sent it."""

    time: datetime
    data: dict[str, Any]


_new_event = partial(tuple.__new__, Event)


class TimesRule(Protocol):
    """How an API decides its events' stored times:
    :class:`~ingest_mw.timestamps.EventTimes`, or anything with its method."""

    def event_times(self, events: list[dict[str, Any]], received_at: datetime) -> list[datetime]: ...


class Events(Sequence[Event]):
    """The events of one request: a read-only sequence of :class:`Event`.

    It holds the decoded objects (:attr:`data`) and decides their stored
    times (:attr:`times`) with ``rule`` the first time anything asks for a
    time or an :class:`Event`, once, with the reception time fixed when the
    batch was made: a hook that only forwards the objects never pays for
    parsing their times. The times are decided from the objects as they are
    when first asked for: a hook that changes an event's time field reads
    the times first.
    """

    __slots__ = ("data", "rule", "received_at", "times_if_decided")

    def __init__(self, data: list[dict[str, Any]], rule: TimesRule, received_at: datetime) -> None:
        self.data = data
        #: The API's rule (its own object, not one made per batch) and the
        #: reception time it decides with: for a copy of the objects too.
        self.rule = rule
        self.received_at = received_at
        #: :attr:`times` if anything has asked for them already, else ``None``:
        #: the times of objects a hook may have changed since. (An attribute,
        #: not a property: a sink reads it on every request.)
        self.times_if_decided: list[datetime] | None = None

    @property
    def times(self) -> list[datetime]:
        """Each event's stored time (aware, UTC), in order."""
        times = self.times_if_decided
        if times is None:
            # Two threads may both get here: the rule is pure, so both get the same.
            times = self.times_if_decided = self.rule.event_times(self.data, self.received_at)
        return times

    def __len__(self) -> int:
        return len(self.data)

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...
    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        if isinstance(index, slice):
            return list(map(_new_event, zip(self.times[index], self.data[index])))
        return _new_event((self.times[index], self.data[index]))

    def __iter__(self) -> Iterator[Event]:
        # No Python call per event: this runs for every event a sink stores.
        return map(_new_event, zip(self.times, self.data))

    def __eq__(self, other: object) -> bool:
        # Like a list: equal to another Events or a list of the same Events.
        if isinstance(other, Events):
            return self.data == other.data and self.times == other.times
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable contents, like a list

    def __repr__(self) -> str:
        return f"Events({list(self)!r})"


# Not frozen: a frozen dataclass sets each field through object.__setattr__,
# slow on every request. A hook is handed the batch to read, not to change.
@dataclass(slots=True)
class Batch:
    """The events of one request and where they came from.

    ``api`` is ``"betterstack"`` or ``"baselime"``; ``source`` the name of
    the credential that authenticated the request; ``dataset``, ``service``
    and ``namespace`` are Baselime's (``None`` for Better Stack), the last two
    from its headers: an event's own are given by :meth:`labels`. ``events``
    is any sequence of :class:`Event` (a list, when a host builds a batch
    itself); the APIs pass :class:`Events`, which decides the times only
    when asked.
    """

    api: str
    source: str
    received_at: datetime
    events: Sequence[Event]
    client: str | None = None
    dataset: str | None = None
    service: str | None = None
    namespace: str | None = None
    #: Whether an event's own string ``service``/``namespace`` fields name its
    #: service and namespace over the batch's (Baselime's): see :meth:`labels`.
    labels_in_events: bool = False

    def labels(self, data: dict[str, Any]) -> tuple[str | None, str | None]:
        """The service and namespace of the event ``data``: its own non-empty
        string ``service``/``namespace`` if :attr:`labels_in_events`, else the
        batch's (Baselime's ``x-service``/``x-namespace`` headers)."""
        service, namespace = self.service, self.namespace
        if self.labels_in_events:
            own = data.get("service")
            if own and isinstance(own, str):
                service = own
            own = data.get("namespace")
            if own and isinstance(own, str):
                namespace = own
        return service, namespace


def _json_default(value: Any) -> Any:
    # MessagePack can carry what JSON cannot: binary strings and extension types.
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, datetime):  # only the fallback below meets these
        return value.isoformat()
    return repr(value)


_JSON_OPTIONS = orjson.OPT_UTC_Z
#: orjson's message when a key is not a string (the only refusal worth a second try).
_NON_STR_KEY = "Dict key must be str"


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=_json_default, option=_JSON_OPTIONS)
    except orjson.JSONEncodeError as error:
        # Keys that are not strings come only from MessagePack; the option that
        # writes them doubles the cost of every dumps, so it is used only then.
        if str(error) != _NON_STR_KEY:
            raise
        return orjson.dumps(value, default=_json_default, option=_JSON_OPTIONS | orjson.OPT_NON_STR_KEYS)


#: Deep enough for anything orjson.loads accepts (1024 levels), with room to spare.
_FALLBACK_RECURSION_LIMIT = 5000


def _as_json(value: Any) -> Any:
    """``value`` as the standard library's ``json`` may write it and orjson would:
    keys as strings, and a NaN or an infinity as ``null`` (``json`` would write
    ``NaN``, which is not JSON, and no JSON reader could read the event back)."""
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else str(_json_default(key) if isinstance(key, bytes) else key): _as_json(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):  # a tuple: a host's own codec may make one
        return [_as_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _event_json_fallback(data: dict[str, Any]) -> bytes:
    """What orjson.dumps refuses although the codecs accepted it: objects nested
    more than 254 levels (orjson.loads takes 1024) and MessagePack binary keys."""
    if sys.getrecursionlimit() < _FALLBACK_RECURSION_LIMIT:
        sys.setrecursionlimit(_FALLBACK_RECURSION_LIMIT)
    text = json.dumps(_as_json(data), default=_json_default, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode()


def event_json(data: dict[str, Any]) -> bytes:
    """An event as JSON text for storage, whatever the codec it arrived in."""
    try:
        return _dumps(data)
    except orjson.JSONEncodeError:
        return _event_json_fallback(data)


#: An event's JSON text as orjson writes it, with no fallback: it raises
#: ``orjson.JSONEncodeError`` for what :func:`event_json` writes another way.
plain_event_json = partial(orjson.dumps, option=_JSON_OPTIONS)


def each_event_json(
    data: Sequence[dict[str, Any]], one: Callable[[dict[str, Any]], bytes] | None = None
) -> list[bytes]:
    """:func:`event_json` of each event, in order: orjson called from C over the
    whole list (no Python call per event), one by one only when some event
    needs the fallback (MessagePack binary, deep nesting). ``one``: how a
    sink with a form of its own writes each event then (default
    :func:`event_json`); it must give plain orjson's text for any event
    orjson writes."""
    try:
        return list(map(plain_event_json, data))
    except orjson.JSONEncodeError:
        return list(map(one or event_json, data))


def events_json(data: list[dict[str, Any]]) -> tuple[bytes, bool]:
    """Several events as one JSON array, each written as :func:`event_json`
    writes it, and whether the array reads back as the events were sent.

    It does when every value is plain JSON or a datetime (a MessagePack
    timestamp, written as the same instant): one ``orjson.dumps`` for the
    whole list. MessagePack binary and the like are written as text, so the
    copy no longer holds what the client sent (``False``).
    """
    try:
        return orjson.dumps(data, option=_JSON_OPTIONS), True
    except orjson.JSONEncodeError:
        pass
    try:
        return _dumps(data), False
    except orjson.JSONEncodeError:
        return b"[" + b",".join(map(event_json, data)) + b"]", False


def load_events_json(text: bytes) -> list[dict[str, Any]]:
    """Read back what :func:`events_json` wrote. Its fallback may nest deeper
    than ``orjson.loads`` reads (an event 1024 levels deep, inside the array)."""
    try:
        return orjson.loads(text)  # type: ignore[no-any-return]
    except orjson.JSONDecodeError:
        if sys.getrecursionlimit() < _FALLBACK_RECURSION_LIMIT:
            sys.setrecursionlimit(_FALLBACK_RECURSION_LIMIT)
        return json.loads(text)  # type: ignore[no-any-return]
