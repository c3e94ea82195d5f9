"""A JSON array read element by element, for Baselime's partial acceptance.

Baselime stores the valid events of a request and lists the others, so one
bad element must not sink its neighbours, and each event has a size limit
measured on its own JSON text. The fast path is a single ``orjson.loads`` of
the whole body. When the body is larger than the per-event limit (so some
element *could* be too large), :func:`object_sizes` measures each object from
the separators between them, with one C-level split. Only when that cannot
tell, or when the body does not parse, does :func:`split_array` find each
top-level element's byte span with a string- and bracket-aware scanner.
"""

from __future__ import annotations

import re
from functools import partial

import orjson

from .codecs import Decoded, InvalidEvent, Rescan, all_objects, require_nonempty
from .errors import IngestError
from .eventcaps import EventCaps
from .headers import byte_size

__all__ = ["JSONArrayCodec", "object_sizes", "split_array"]

# A string (group 1 is its closing quote, missing if it never ends), a
# bracket or comma, or a run of anything else that is not white space.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(")?|[\[\]{},]|[^\s"\[\]{},]+')

# Inside an element only brackets and strings matter. In these patterns each
# position can be matched one way only (a quote starts a string, a bracket a
# nesting, anything else is plain), so giving back what a quantifier took can
# never help: possessive quantifiers (Python 3.11+) say so, and a failing
# match (an unclosed string, say) costs no backtracking.
_ONCE = b"+"
#: A complete string: it matches exactly where _TOKEN's group 1 would be found.
_STRING = rb'"[^"\\]*' + _ONCE + rb'(?:\\.[^"\\]*' + _ONCE + rb")*" + _ONCE + b'"'
_PLAIN = rb'[^"\[\]{}]*' + _ONCE  # anything but a quote or a bracket (commas too)
#: Everything up to the next bracket, skipping whole strings; it stops at a
#: bracket, at a string that never closes, or at the end of the body.
_SKIP = re.compile(_PLAIN + rb"(?:" + _STRING + _PLAIN + rb")*" + _ONCE)


def _nested(levels: int) -> bytes:
    """A regex for the inside of a bracket pair holding up to ``levels`` more levels
    of brackets (written as unrolled loops: no match is ever tried two ways)."""
    inner = _PLAIN + rb"(?:" + _STRING + _PLAIN + rb")*" + _ONCE
    for _ in range(levels):
        inner = _PLAIN + rb"(?:(?:" + _STRING + rb"|[\[{]" + inner + rb"[\]}])" + _PLAIN + rb")*" + _ONCE
    return inner


#: A whole element that starts with a bracket, nested up to 8 levels deep (one
#: C-level match where the token loop would take a step per string and
#: bracket); a deeper or unfinished one is followed bracket by bracket.
_ELEMENT = re.compile(rb"[\[{]" + _nested(7) + rb"[\]}]")

_OPEN, _FIRST, _VALUE, _AFTER, _DONE = range(5)
_LBRACKET, _RBRACKET, _LBRACE, _RBRACE, _COMMA, _QUOTE = b'[]{},"'


def _not_an_array() -> IngestError:
    """The 400 of a body that is not a JSON array (a single event too is sent as one)."""
    return IngestError(400, "the request body must be a JSON array of event objects, a single event too: [{...}]")


def _not_json() -> IngestError:
    """The 400 of a body that is not JSON at all (one that parses as another
    JSON value than an array gets :func:`_not_an_array` before it is split)."""
    return IngestError(400, "the request body is not valid JSON: send a JSON array of event objects, [{...}]")


def _broken(why: str) -> IngestError:
    return IngestError(400, f"the request body is not a well-formed JSON array: {why}")


def _element_end(body: bytes, start: int) -> int:
    """Where the element opened by the bracket at ``start`` ends (just past its
    closing bracket): brackets of either kind count, strings are skipped."""
    match = _ELEMENT.match(body, start)
    if match is not None:
        return match.end()
    depth = 1
    pos = start + 1
    skip = _SKIP.match
    size = len(body)
    while True:
        pos = skip(body, pos).end()  # type: ignore[union-attr]
        if pos == size:
            raise _broken("the array is never closed")
        first = body[pos]
        if first == _QUOTE:  # _SKIP stops at a quote only if that string never ends
            raise _broken("a string is never closed")
        pos += 1
        if first == _LBRACE or first == _LBRACKET:
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return pos


def split_array(body: bytes) -> list[tuple[int, int]]:
    """The ``(start, end)`` byte span of each top-level element of the array in ``body``.

    Elements need not be valid JSON themselves; the array must be: a ``[``,
    elements separated by commas, a ``]`` and nothing after it. Otherwise a
    400 is raised and nothing of the body is used.
    """
    spans: list[tuple[int, int]] = []
    state = _OPEN
    pos = 0
    search = _TOKEN.search
    while (match := search(body, pos)) is not None:
        pos = match.end()
        first = body[match.start()]
        if first == _QUOTE and match.group(1) is None:
            raise _broken("a string is never closed")
        if state == _OPEN:
            if first != _LBRACKET:
                raise _not_json()
            state = _FIRST
        elif state == _FIRST and first == _RBRACKET:
            state = _DONE
        elif state == _FIRST or state == _VALUE:
            if first == _LBRACE or first == _LBRACKET:
                pos = _element_end(body, match.start())
                spans.append((match.start(), pos))
            elif first in (_COMMA, _RBRACKET, _RBRACE):
                raise _broken(f"element {len(spans)} is missing")
            else:
                spans.append((match.start(), pos))
            state = _AFTER
        elif state == _AFTER:
            if first == _COMMA:
                state = _VALUE
            elif first == _RBRACKET:
                state = _DONE
            else:
                raise _broken(f"unexpected data after element {len(spans) - 1}")
        else:
            raise _broken("data after the closing bracket")
    if state != _DONE:
        raise _broken("the array is never closed")
    return spans


#: Between two objects that are neighbours in an array, outside any string.
_OBJECT_SEPARATOR = re.compile(rb"\}[ \t\n\r]*,[ \t\n\r]*\{")


def object_sizes(body: bytes, count: int) -> list[int] | None:
    """The length in ``body`` of each element of a JSON array that is known to
    parse and to hold ``count`` objects, or ``None`` when it cannot be told
    this cheap way (then :func:`split_array` measures them).

    Every two neighbouring objects are separated by ``}``, ``,`` and ``{``
    with only white space between them, so each separator is one match of
    :data:`_OBJECT_SEPARATOR`. Other matches (inside a string, or between
    objects nested in an event) would make more than ``count - 1``: exactly
    ``count - 1`` matches are therefore exactly the separators.
    """
    inner = body.strip()
    if inner[:1] != b"[" or inner[-1:] != b"]":
        return None
    inner = inner[1:-1].strip()
    if count == 0:
        return [] if not inner else None
    if inner[:1] != b"{" or inner[-1:] != b"}":
        return None
    pieces = _OBJECT_SEPARATOR.split(inner)
    if len(pieces) != count:
        return None
    if count == 1:
        return [len(inner)]
    # Each separator took the "}" of the element before it and the "{" of the one after.
    sizes = [len(piece) + 2 for piece in pieces]
    sizes[0] -= 1
    sizes[-1] -= 1
    return sizes


class JSONArrayCodec:
    """``application/json`` holding an array of event objects, kept element by element.

    An element that is not an object, not valid JSON, or longer than
    ``max_event_bytes`` (its own bytes in the body) is listed as invalid;
    the others are kept.
    """

    media_types = ("application/json",)

    def __init__(self, *, max_event_bytes: int, caps: EventCaps | None = None) -> None:
        self.max_event_bytes = max_event_bytes
        self.caps = caps or EventCaps()

    def decode(self, body: bytes) -> Decoded | Rescan:
        require_nonempty(body, "send a JSON array of event objects, [{...}, ...]")
        self.caps.check_json(body)
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return Rescan(partial(self._element_by_element, body))
        if type(value) is not list:
            raise _not_an_array()
        if all_objects(value):
            # No element can be longer than the whole body: the common case needs
            # no per-event measuring at all; past the limit, the separators
            # between the objects give each one's length.
            if len(body) <= self.max_event_bytes:
                return Decoded(value, (), True)
            sizes = object_sizes(body, len(value))
            if sizes is not None:
                if max(sizes, default=0) <= self.max_event_bytes:
                    return Decoded(value, (), True)
                return self._judge(value, sizes)
        if len(body) <= self.max_event_bytes:
            return self._judge(value, None)  # some non-objects: one cheap pass
        return Rescan(partial(self._element_by_element, body, value))

    def _element_by_element(self, body: bytes, parsed: list[object] | None = None) -> Decoded:
        """Judge each element on its own; ``parsed`` is the whole array when it parsed."""
        spans = split_array(body)
        self.caps.check_count(len(spans))
        sizes = [end - start for start, end in spans]
        if parsed is None:
            limit = self.max_event_bytes  # a larger element is refused unread
            parsed = [_loads_or_invalid(body[start:end]) if end - start <= limit else None for start, end in spans]
        return self._judge(parsed, sizes)

    def _judge(self, items: list[object], sizes: list[int] | None) -> Decoded:
        """Keep the objects; list the rest, and those larger than the limit, as invalid."""
        limit = self.max_event_bytes
        events, invalid = [], []
        for index, item in enumerate(items):
            if sizes is not None and sizes[index] > limit:
                invalid.append(InvalidEvent(index, f"larger than {byte_size(limit)} of JSON", "too_large"))
            elif type(item) is dict:
                events.append(item)
            elif item is _NOT_JSON:
                invalid.append(InvalidEvent(index, "not valid JSON", "invalid_json"))
            else:
                invalid.append(InvalidEvent(index, "not a JSON object", "not_an_object"))
        return Decoded(events, invalid, True)


#: Stands for an element that is not valid JSON.
_NOT_JSON = object()


def _loads_or_invalid(element: bytes) -> object:
    try:
        return orjson.loads(element)
    except orjson.JSONDecodeError:
        return _NOT_JSON
