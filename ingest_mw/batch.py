"""What a storage hook receives: one :class:`Batch` per accepted request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from datetime import datetime
from typing import Any, NamedTuple

import orjson

__all__ = ["Batch", "Event", "event_json", "pair_events"]


class Event(NamedTuple):
    """One stored event: its time (aware, UTC) and the object as the client sent it."""

    time: datetime
    data: dict[str, Any]


_new_event = partial(tuple.__new__, Event)


def pair_events(times: Iterable[datetime], data: Iterable[dict[str, Any]]) -> list[Event]:
    """``[Event(t, d) for t, d in zip(times, data)]``, built without a Python call per
    event (it runs once for every event of every request)."""
    return list(map(_new_event, zip(times, data)))


@dataclass(frozen=True, slots=True)
class Batch:
    """The events of one request and where they came from.

    ``api`` is ``"betterstack"`` or ``"baselime"``; ``source`` the name of the
    credential that authenticated the request; ``dataset``, ``service`` and
    ``namespace`` are Baselime's (``None`` for Better Stack).
    """

    api: str
    source: str
    received_at: datetime
    events: list[Event]
    client: str | None = None
    dataset: str | None = None
    service: str | None = None
    namespace: str | None = None


def _json_default(value: Any) -> Any:
    # MessagePack can carry what JSON cannot: binary strings and extension types.
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "backslashreplace")
    return repr(value)


_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


def event_json(data: dict[str, Any]) -> bytes:
    """An event as JSON text for storage, whatever the codec it arrived in."""
    return orjson.dumps(data, default=_json_default, option=_JSON_OPTIONS)
