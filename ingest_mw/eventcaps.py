"""Per-request caps on what a body may hold: how many events, how deeply nested.

A body within the byte limit can still be expensive: 20 MiB of MessagePack
empty maps is twenty million objects to build, store and answer for, and an
event nested a thousand levels deep leaves orjson's fast writer (254 levels)
for a slow one. :class:`EventCaps` refuses both, naming the cap, in the
API's own style: ``413`` for too many events, ``400`` for too deep an event.

The count is checked before anything is decoded wherever the wire format
tells it cheaply (a MessagePack array header; an upper bound on the objects
of a JSON text, from counting its ``{``); the depth, and the count of a body
that had to be decoded to know it, right after the decode.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Callable
from datetime import datetime
from gc import get_referents
from typing import Any, TypeVar

from .checks import whole_number
from .errors import IngestError

__all__ = ["CONTAINERS_PER_EVENT", "MAX_DEPTH", "MAX_EVENTS", "EventCaps"]

_T = TypeVar("_T")

#: The default events cap. Neither contract caps the count, only the bytes
#: (Baselime 6 MB, Better Stack 20 MiB), so the cap is set where spec-valid
#: batches of real events pass: a 6 MB Baselime array of events from 120
#: bytes up (some 24,000 of 250 bytes in the benchmark's), while the 20 MiB
#: bodies of tiny events the byte limit lets through (millions) are refused.
MAX_EVENTS = 50_000
#: The default depth cap: far deeper than logs nest (Elasticsearch maps 20
#: levels by default), well under the 254 levels orjson writes at C speed.
MAX_DEPTH = 64
#: Objects and arrays a request may hold, per event of the cap: what decoding
#: costs is the containers built (a MiB of MessagePack empty maps is a
#: million of them, 50 ms of CPU), and logs nest a few per event.
CONTAINERS_PER_EVENT = 16


#: What nests: JSON's objects and arrays as decoded (MessagePack's too).
_CONTAINERS = frozenset((dict, list))
#: Whether ``gc.get_referents`` gives every value of a dict and every item of
#: a list (CPython's ``tp_traverse`` does; other interpreters may not), and
#: is cheap (a free-threaded build stops every thread for it).
_REFERENTS_ARE_VALUES = sys.implementation.name == "cpython" and not sysconfig.get_config_var("Py_GIL_DISABLED")
#: The exact types of plain decoded values (what orjson and msgpack make).
_PLAIN_TYPES = frozenset((dict, list, str, int, float, bool, type(None), bytes, datetime))


class EventCaps:
    """At most ``max_events`` events a request, none nested deeper than
    ``max_depth`` levels (an event object is level 1)."""

    __slots__ = ("max_events", "max_depth", "max_containers")

    def __init__(self, *, max_events: int = MAX_EVENTS, max_depth: int = MAX_DEPTH) -> None:
        self.max_events = whole_number("max_events", max_events)
        self.max_depth = whole_number("max_depth", max_depth)
        #: Objects and arrays in one request, at any depth.
        self.max_containers = CONTAINERS_PER_EVENT * max_events

    def too_many(self, count: int | None = None) -> IngestError:
        """The 413 for a body with more events than the cap (``count`` if known)."""
        what = f"{count} events" if count is not None else "more events than that"
        return IngestError(
            413,
            f"at most {self.max_events} events per request (max_events); this one holds {what}:"
            " send them in several requests",
        )

    def check_count(self, count: int) -> None:
        if count > self.max_events:
            raise self.too_many(count)

    def too_many_containers(self) -> IngestError:
        return IngestError(
            413,
            f"at most {self.max_containers} objects and arrays per request ({CONTAINERS_PER_EVENT} per event"
            " of max_events): send the events in several requests",
        )

    def check_json(self, body: bytes) -> None:
        """Before a JSON (or NDJSON) text is decoded: refuse it when it holds
        more objects and arrays than :attr:`max_containers`, counted as its
        ``{`` and ``[`` bytes (an upper bound: brackets inside strings count
        too). A body too short to hold that many is not counted at all."""
        if len(body) > 2 * self.max_containers and body.count(b"{") + body.count(b"[") > self.max_containers:
            raise self.too_many_containers()

    def check_msgpack_header(self, body: bytes) -> None:
        """Before a MessagePack body is decoded: the count of a top-level
        array is in its header."""
        if not body:
            return
        first = body[0]
        if first == 0xDC:
            count = int.from_bytes(body[1:3], "big")
        elif first == 0xDD:
            count = int.from_bytes(body[1:5], "big")
        else:
            return  # a fixarray holds at most 15, a map is one event
        self.check_count(count)

    def container_counter(self) -> Callable[[_T], _T]:
        """A MessagePack ``object_hook``/``list_hook`` that counts the
        containers as they are built and refuses past :attr:`max_containers`
        (a Python call each: for large bodies only, where it bounds the cost)."""
        left = self.max_containers

        def count(container: _T) -> _T:
            nonlocal left
            left -= 1
            if left < 0:
                raise self.too_many_containers()
            return container

        return count

    def check(
        self, events: list[dict[str, Any]], body_size: int, *, plain: bool = False, nests_at_most: int | None = None
    ) -> None:
        """After the decode: the count, then the depth of each event. A body
        of ``body_size`` bytes cannot nest deeper than it is long (a level
        costs at least one byte), so a short one is not walked. ``plain``:
        the events hold nothing but dicts, lists and scalars (see
        :attr:`~ingest_mw.codecs.Decoded.plain`), so the depth is measured
        at C speed; ``nests_at_most``: how deep the decoder lets events nest at
        most (:attr:`~ingest_mw.codecs.Decoded.nests_at_most`)."""
        if len(events) > self.max_events:
            raise self.too_many(len(events))
        if body_size > self.max_depth and (nests_at_most is None or nests_at_most > self.max_depth):
            if plain and _REFERENTS_ARE_VALUES:
                self._check_plain_depth(events, body_size)
            else:
                self._check_depth(events)

    def too_deep(self) -> IngestError:
        return IngestError(400, f"an event nests deeper than {self.max_depth} levels (max_depth): flatten it")

    def _check_plain_depth(self, events: list[dict[str, Any]], body_size: int) -> None:
        # Level by level, each in one C call: gc.get_referents gives what the
        # dicts and lists of a level hold (their values and items) and skips
        # the scalars, which hold nothing; so ``level`` is every object at
        # level ``depth``, containers and scalars alike. Only at the cap does
        # it matter which of them are containers. An object of another kind
        # that holds references would lead elsewhere (an instance to its
        # class, and from there anywhere): plain values never number more
        # than the body has bytes, so more than that, or any other type at
        # the cap, hands the events to the general walk.
        level: list[Any] = events
        depth = 1
        seen = 0
        while True:
            held = get_referents(*level)
            if not held:
                return
            seen += len(held)
            if seen > body_size:
                return self._check_depth(events)
            if depth >= self.max_depth:
                kinds = set(map(type, held))
                if not kinds <= _PLAIN_TYPES:
                    return self._check_depth(events)
                if not kinds.isdisjoint(_CONTAINERS):
                    raise self.too_deep()
                return
            level = held
            depth += 1

    def _check_depth(self, events: list[dict[str, Any]]) -> None:
        # Level by level, one comprehension per level (no Python frame per
        # container, no recursion): a shallow event costs one pass over its
        # values. The events themselves are dicts (the codecs refused any
        # other), so the first level reads their values without asking. A
        # container that several events share (OTLP's resource and scope)
        # is walked once per level, not once per event that holds it.
        level: list[Any] = [value for event in events for value in event.values() if type(value) in _CONTAINERS]
        depth = 2
        while level:
            if depth > self.max_depth:
                raise self.too_deep()
            if len(level) > 1:
                level = list(dict(zip(map(id, level), level)).values())
            level = [
                value
                for container in level
                for value in (container.values() if type(container) is dict else container)
                if type(value) in _CONTAINERS
            ]
            depth += 1
