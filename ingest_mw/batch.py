"""What a storage hook receives: one :class:`Batch` per accepted request."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
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
    if isinstance(value, datetime):  # only the fallback below meets these
        return value.isoformat()
    return repr(value)


_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z

#: Deep enough for anything orjson.loads accepts (1024 levels), with room to spare.
_FALLBACK_RECURSION_LIMIT = 5000


def _str_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else str(_json_default(key) if isinstance(key, bytes) else key):
            _str_keys(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_str_keys(item) for item in value]
    return value


def _event_json_fallback(data: dict[str, Any]) -> bytes:
    """What orjson.dumps refuses although the codecs accepted it: objects nested
    more than 254 levels (orjson.loads takes 1024) and MessagePack binary keys."""
    if sys.getrecursionlimit() < _FALLBACK_RECURSION_LIMIT:
        sys.setrecursionlimit(_FALLBACK_RECURSION_LIMIT)
    text = json.dumps(_str_keys(data), default=_json_default, ensure_ascii=False, separators=(",", ":"))
    return text.encode()


def event_json(data: dict[str, Any]) -> bytes:
    """An event as JSON text for storage, whatever the codec it arrived in."""
    try:
        return orjson.dumps(data, default=_json_default, option=_JSON_OPTIONS)
    except orjson.JSONEncodeError:
        return _event_json_fallback(data)
