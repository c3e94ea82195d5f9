"""A JSON array read element by element, for Baselime's partial acceptance.

Baselime stores the valid events of a request and lists the others, so one
bad element must not sink its neighbours, and each event has a size limit
measured on its own JSON text. The fast path is a single ``orjson.loads`` of
the whole body; only when that fails, or when the body is larger than the
per-event limit (so some element *could* be too large), does
:func:`split_array` find each top-level element's byte span with a string- and
bracket-aware scanner.
"""

from __future__ import annotations

import re

import orjson

from .codecs import Decoded, InvalidEvent, require_nonempty
from .errors import IngestError

__all__ = ["JSONArrayCodec", "split_array"]

# A string (group 1 is its closing quote, missing if it never ends), a
# bracket or comma, or a run of anything else that is not white space.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(")?|[\[\]{},]|[^\s"\[\]{},]+')

_OPEN, _FIRST, _VALUE, _AFTER, _DONE = range(5)
_LBRACKET, _RBRACKET, _LBRACE, _RBRACE, _COMMA, _QUOTE = b"[]{},\""


def _broken(why: str) -> IngestError:
    return IngestError(400, f"the request body is not a well-formed JSON array: {why}")


def split_array(body: bytes) -> list[tuple[int, int]]:
    """The ``(start, end)`` byte span of each top-level element of the array in ``body``.

    Elements need not be valid JSON themselves; the array must be: a ``[``,
    elements separated by commas, a ``]`` and nothing after it. Otherwise a
    400 is raised and nothing of the body is used.
    """
    spans: list[tuple[int, int]] = []
    state = _OPEN
    depth = 0
    start = 0
    for match in _TOKEN.finditer(body):
        first = body[match.start()]
        if first == _QUOTE and match.group(1) is None:
            raise _broken("a string is never closed")
        if depth >= 2:  # inside an element: only nesting matters
            if first == _LBRACE or first == _LBRACKET:
                depth += 1
            elif first == _RBRACE or first == _RBRACKET:
                depth -= 1
                if depth == 1:
                    spans.append((start, match.end()))
                    state = _AFTER
            continue
        if state == _OPEN:
            if first != _LBRACKET:
                raise IngestError(400, "the request body must be a JSON array of event objects")
            depth, state = 1, _FIRST
        elif state == _FIRST and first == _RBRACKET:
            depth, state = 0, _DONE
        elif state == _FIRST or state == _VALUE:
            if first == _LBRACE or first == _LBRACKET:
                start, depth = match.start(), 2
            elif first in (_COMMA, _RBRACKET, _RBRACE):
                raise _broken(f"element {len(spans)} is missing")
            else:
                spans.append((match.start(), match.end()))
                state = _AFTER
        elif state == _AFTER:
            if first == _COMMA:
                state = _VALUE
            elif first == _RBRACKET:
                depth, state = 0, _DONE
            else:
                raise _broken(f"unexpected data after element {len(spans) - 1}")
        else:
            raise _broken("data after the closing bracket")
    if state != _DONE:
        raise _broken("the array is never closed")
    return spans


class JSONArrayCodec:
    """``application/json`` holding an array of event objects, kept element by element.

    An element that is not an object, not valid JSON, or longer than
    ``max_event_bytes`` (its own bytes in the body) is listed as invalid;
    the others are kept.
    """

    media_types = ("application/json",)

    def __init__(self, *, max_event_bytes: int) -> None:
        self.max_event_bytes = max_event_bytes

    def decode(self, body: bytes) -> Decoded:
        require_nonempty(body)
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._element_by_element(body)
        if type(value) is not list:
            raise IngestError(400, "the request body must be a JSON array of event objects")
        # No element can be longer than the whole body: the common case needs
        # no per-event measuring at all.
        if len(body) <= self.max_event_bytes and all(type(item) is dict for item in value):
            return Decoded(value)
        return self._element_by_element(body, value)

    def _element_by_element(self, body: bytes, parsed: list[object] | None = None) -> Decoded:
        """Judge each element on its own; ``parsed`` is the whole array when it parsed."""
        limit = self.max_event_bytes
        spans: list[tuple[int, int]] | list[None]
        if parsed is None or len(body) > limit:
            spans = split_array(body)
        else:
            spans = [None] * len(parsed)
        events, invalid = [], []
        for index, span in enumerate(spans):
            if span is not None and span[1] - span[0] > limit:
                invalid.append(InvalidEvent(index, f"larger than {limit} bytes of JSON"))
                continue
            if parsed is not None:
                item = parsed[index]
            else:
                assert span is not None
                try:
                    item = orjson.loads(body[span[0] : span[1]])
                except orjson.JSONDecodeError:
                    invalid.append(InvalidEvent(index, "not valid JSON"))
                    continue
            if type(item) is dict:
                events.append(item)
            else:
                invalid.append(InvalidEvent(index, "not a JSON object"))
        return Decoded(events, invalid)
