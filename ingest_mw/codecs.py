"""Codecs: turn a decoded request body into a list of event objects.

A codec knows one wire format; :class:`CodecNegotiation` picks one from the
``Content-Type`` header (its parameters, such as ``charset``, are ignored).
orjson and msgpack do the decoding; the codecs only check the shape the APIs
promise: an event is a JSON object (a map), never a scalar or a list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol

import msgpack
import orjson

from . import headers
from .errors import IngestError
from .eventcaps import EventCaps

__all__ = [
    "Codec",
    "CodecNegotiation",
    "Decoded",
    "Rescan",
    "INVALID_KINDS",
    "InvalidEvent",
    "all_objects",
    "JSONCodec",
    "MsgPackCodec",
    "NDJSONCodec",
    "media_type",
    "require_objects",
]

Event = dict[str, Any]

#: Better Stack's live service answers 406 with exactly this body.
JSON_PARSE_ERROR = "Couldn't parse JSON content."
#: The response header that says where a body failed to parse: the 406 body
#: stays the contract's, for clients that compare it.
PARSE_ERROR_HEADER = "X-Parse-Error"


#: Why a codec refused an element while it kept its neighbours
#: (:attr:`InvalidEvent.kind`): a fixed set, whatever clients send, that the
#: metrics use as labels. ``invalid`` is any other reason.
INVALID_KINDS = ("too_large", "invalid_json", "not_an_object", "invalid")


class _IndexAndReason(NamedTuple):
    index: int  # type: ignore[assignment]  # (NamedTuple's field shadows tuple.index)
    reason: str


class InvalidEvent(_IndexAndReason):
    """An element of the request that was refused while its neighbours were kept:
    ``(index, reason)``, as a pair (``reason`` is what the client is told), and
    its ``kind``, one of :data:`INVALID_KINDS` (``invalid`` unless given).

    The kind is the element's class (one per kind, each a subclass of this
    one), so that it survives whatever a tuple goes through: ``_replace``,
    ``_make``, pickling, copying."""

    __slots__ = ()
    kind: ClassVar[str] = "invalid"

    def __new__(cls, index: int, reason: str, kind: str | None = None) -> InvalidEvent:
        if kind is not None and kind != cls.kind:
            try:
                cls = _INVALID_OF_KIND[kind]
            except KeyError:
                raise ValueError(f"kind = {kind!r}: give one of {', '.join(INVALID_KINDS)}") from None
        return tuple.__new__(cls, (index, reason))

    def __repr__(self) -> str:
        return f"InvalidEvent(index={self.index!r}, reason={self.reason!r}, kind={self.kind!r})"


class _TooLarge(InvalidEvent):
    __slots__ = ()
    kind = "too_large"


class _InvalidJSON(InvalidEvent):
    __slots__ = ()
    kind = "invalid_json"


class _NotAnObject(InvalidEvent):
    __slots__ = ()
    kind = "not_an_object"


_INVALID_OF_KIND: dict[str, type[InvalidEvent]] = {
    element.kind: element for element in (_TooLarge, _InvalidJSON, _NotAnObject, InvalidEvent)
}
assert set(_INVALID_OF_KIND) == set(INVALID_KINDS)


@dataclass(slots=True)
class Decoded:
    """What a codec found in a body: the events to store and the ones refused."""

    events: list[Event]
    # A tuple, not a list from a default factory: no call on every request.
    invalid: Sequence[InvalidEvent] = ()
    #: Whether the events are trees of nothing but dicts, lists and scalars
    #: of exactly the plain types (str, int, float, bool, None, bytes,
    #: datetime), no object shared between them: what orjson makes, and
    #: msgpack without extension types. The depth cap then measures them at
    #: C speed (:meth:`~ingest_mw.eventcaps.EventCaps.check`); a codec that
    #: cannot promise it leaves it ``False``.
    plain: bool = False
    #: How deep the events can nest at most, where the decoder's own guard says
    #: so (OTLP's protobuf decoder: 50 levels): the depth cap walks no events
    #: this bounds within it. ``None``: no bound but the body's size.
    nests_at_most: int | None = None


@dataclass(frozen=True, slots=True)
class Rescan:
    """What a codec returns when its fast, C-level decode could not judge the
    body: ``work()`` does it element by element, with Python work per element
    (Baselime's partial acceptance), so the flow has it run off the event loop
    at a much smaller size than a fast decode
    (:data:`~ingest_mw.api.RESCAN_OFFLOAD_BYTES`)."""

    work: Callable[[], Decoded]


class Codec(Protocol):
    @property
    def media_types(self) -> Sequence[str]: ...

    def decode(self, body: bytes) -> Decoded | Rescan: ...


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return type(value).__name__


#: What a Better Stack body holds, for the 400 of an empty one.
ONE_OR_MORE = "send one event object or an array of them"


def require_nonempty(body: bytes, expected: str = ONE_OR_MORE) -> None:
    """400 for a body with nothing in it, saying what to send (``expected``)."""
    if not body or body.isspace():
        raise IngestError(400, f"request body is empty: {expected}")


def json_error_headers(error: orjson.JSONDecodeError) -> tuple[tuple[str, str], ...]:
    """Where orjson stopped, as the :data:`PARSE_ERROR_HEADER` of a 406 whose
    body is the contract's fixed text."""
    return ((PARSE_ERROR_HEADER, f"line {error.lineno}, column {error.colno} (byte {error.pos}): {error.msg}"),)


def all_objects(items: list[Any]) -> bool:
    """Whether every item is a ``dict`` (exactly: what orjson and msgpack make),
    checked without a Python-level step per item."""
    return not items or set(map(type, items)) == {dict}


def _first_non_object(items: list[Any]) -> tuple[int, Any] | None:
    if all_objects(items):
        return None
    return next((i, item) for i, item in enumerate(items) if type(item) is not dict)


def require_objects(value: Any) -> list[Event]:
    """One object or an array of objects, as a list; 400 naming the first bad element."""
    if type(value) is dict:
        return [value]
    if type(value) is not list:
        raise IngestError(400, f"expected an event object or an array of event objects, got {_type_name(value)}")
    bad = _first_non_object(value)
    if bad is not None:
        raise IngestError(400, f"event {bad[0]} is {_type_name(bad[1])}: every event must be an object")
    return value


#: A MessagePack body above this size is decoded with hooks that count its
#: containers (:meth:`EventCaps.container_counter`): a Python call per map and
#: array, which bounds what a body of tiny maps costs (a MiB of them is a
#: million maps, 50 ms), where a small body is decoded at full C speed.
MSGPACK_COUNTED_BYTES = 64 * 1024


class JSONCodec:
    """``application/json``: one event object or an array of them (within ``caps``)."""

    media_types = ("application/json",)

    def __init__(self, *, caps: EventCaps | None = None) -> None:
        self.caps = caps or EventCaps()

    def decode(self, body: bytes) -> Decoded:
        self.caps.check_json(body)
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            # orjson refuses an empty body too: told apart only here, off the common path.
            require_nonempty(body)
            raise IngestError(406, JSON_PARSE_ERROR, headers=json_error_headers(error)) from None
        return Decoded(require_objects(value), (), True)


class NDJSONCodec:
    """Newline-delimited JSON: one event object per line; blank lines are skipped."""

    media_types = ("application/x-ndjson", "application/ndjson", "application/jsonl")

    def __init__(self, *, caps: EventCaps | None = None) -> None:
        self.caps = caps or EventCaps()

    def decode(self, body: bytes) -> Decoded:
        require_nonempty(body)
        caps = self.caps
        caps.check_json(body)
        loads = orjson.loads
        # JSON strings cannot hold a raw line break, so splitting is exact.
        body_lines = body.splitlines()
        if len(body_lines) > caps.max_events:  # (blank lines count here: counted again after)
            caps.check_count(sum(1 for line in body_lines if line and not line.isspace()))
        try:
            events = [loads(line) for line in body_lines if line and not line.isspace()]
        except orjson.JSONDecodeError:
            raise IngestError(406, JSON_PARSE_ERROR, headers=_ndjson_error_headers(body)) from None
        bad = _first_non_object(events)
        if bad is not None:
            index, item = bad
            lines = [n for n, line in enumerate(body_lines, 1) if line and not line.isspace()]
            raise IngestError(400, f"line {lines[index]} holds {_type_name(item)}: every line must be an object")
        return Decoded(events, (), True)


def _ndjson_error_headers(body: bytes) -> tuple[tuple[str, str], ...]:
    """:func:`json_error_headers` for the first line of ``body`` that does not parse."""
    for number, line in enumerate(body.splitlines(), 1):
        if line and not line.isspace():
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError as error:
                where = f"line {number}, column {error.colno}: {error.msg}"
                return ((PARSE_ERROR_HEADER, where),)
    return ()


class MsgPackCodec:
    """MessagePack: one map or an array of maps; timestamps decode to UTC datetimes."""

    media_types = ("application/msgpack", "application/x-msgpack")

    def __init__(self, *, caps: EventCaps | None = None) -> None:
        self.caps = caps or EventCaps()

    def decode(self, body: bytes) -> Decoded:
        if not body:  # (white space is not empty here: b" " is the number 32)
            require_nonempty(body)
        caps = self.caps
        caps.check_msgpack_header(body)
        extensions: list[msgpack.ExtType] = []
        try:
            try:
                value = self._unpack(body, 3, extensions)
            except (OverflowError, ValueError) as error:
                if _msgpack_error(error) != _OUT_OF_CALENDAR:
                    raise
                # A timestamp datetime cannot hold (past year 9999): the whole body
                # again, each timestamp a datetime where it can be, else its
                # nanoseconds since the epoch (no time: the event's is its reception's).
                extensions.clear()
                value = _datetimes_where_they_fit(self._unpack(body, 0, extensions))
        except IngestError:
            raise
        except Exception as error:  # msgpack raises ValueError, TypeError, OverflowError and its own kinds
            # The body stays the contract's words; what msgpack found goes in the header, as for JSON.
            raise IngestError(
                406, "Couldn't parse MessagePack content.", headers=((PARSE_ERROR_HEADER, _msgpack_error(error)),)
            ) from None
        # An extension type (timestamps aside) decodes to an ExtType, an object of a class.
        return Decoded(require_objects(value), (), not extensions)

    def _unpack(self, body: bytes, timestamp: int, extensions: list[msgpack.ExtType]) -> Any:
        """``body`` decoded, timestamps as datetimes (3) or ``msgpack.Timestamp`` (0);
        a large body with hooks that count its containers."""
        if len(body) > MSGPACK_COUNTED_BYTES:
            counter = self.caps.container_counter()
            return msgpack.unpackb(
                body, timestamp=timestamp, object_hook=counter, list_hook=counter, ext_hook=_kept_in(extensions)
            )
        return msgpack.unpackb(body, timestamp=timestamp, ext_hook=_kept_in(extensions))


def _datetimes_where_they_fit(value: Any) -> Any:
    """``value`` with each ``msgpack.Timestamp`` in it a UTC datetime, or, past what
    a datetime holds, its nanoseconds since the epoch (an int, as JSON can store)."""
    if isinstance(value, msgpack.Timestamp):
        return _timestamp_value(value)
    pending = [value]
    while pending:  # no recursion: msgpack nests up to 1024 levels
        container = pending.pop()
        items = container.items() if type(container) is dict else enumerate(container)
        for key, item in list(items):
            if isinstance(item, msgpack.Timestamp):
                container[key] = _timestamp_value(item)
            elif type(item) in (dict, list):
                pending.append(item)
    return value


def _timestamp_value(timestamp: msgpack.Timestamp) -> Any:
    try:
        return timestamp.to_datetime()
    except (OverflowError, ValueError):
        return timestamp.to_unix_nano()


_OUT_OF_CALENDAR = "a timestamp outside the years 1 to 9999"
#: What msgpack's errors without words of their own mean.
_MSGPACK_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (msgpack.ExtraData, "extra bytes after the first value: send one value (an array of events)"),
    (msgpack.FormatError, "a byte that starts no MessagePack value (0xc1, say)"),
    (msgpack.StackError, "nested deeper than the MessagePack decoder takes"),
    (OverflowError, _OUT_OF_CALENDAR),
)


def _msgpack_error(error: Exception) -> str:
    """What msgpack found wrong, as a header value (printable ASCII, at most 200 characters)."""
    for kind, words in _MSGPACK_ERRORS:
        if isinstance(error, kind):
            return words
    found = str(error)
    if "date value out of range" in found or "year" in found and "out of range" in found:
        return _OUT_OF_CALENDAR
    return found[:200].encode("ascii", "replace").decode() or type(error).__name__


def _kept_in(extensions: list[msgpack.ExtType]) -> Callable[[int, bytes], msgpack.ExtType]:
    """An ``ext_hook`` that decodes an extension type as msgpack does, noting it in ``extensions``."""

    def ext_hook(code: int, data: bytes) -> msgpack.ExtType:
        extension = msgpack.ExtType(code, data)
        extensions.append(extension)
        return extension

    return ext_hook


def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a Content-Type header value."""
    if not content_type:
        return ""
    return content_type.partition(";")[0].strip().lower()


def repeated_media_type(content_type: str) -> str | None:
    """The media type of a Content-Type a client sent twice (``fetch()`` joins
    ``Content-Type`` and ``content-type`` into ``application/json,
    application/json``): its comma-separated parts all name it, parameters
    aside; ``None`` for one part; 415 when the parts name different types."""
    if "," not in content_type:
        return None
    types = {media_type(part) for part in headers.parts(content_type)}
    if len(types) == 1:
        return types.pop()
    raise IngestError(415, f"Content-Type names several media types ({', '.join(sorted(types))}): send one")


#: How many Content-Type values, as sent, a :class:`CodecNegotiation` remembers
#: (about: threads that negotiate at the same moment may each add one more),
#: and the longest it remembers. A value is remembered for good, first come,
#: first served: a client that varies a parameter can fill the table, which
#: then costs others only the parsing it saves.
_KNOWN_VALUES = 64
_KNOWN_VALUE_LENGTH = 64


class CodecNegotiation:
    """Choose a codec by Content-Type; 415 listing what is accepted otherwise."""

    def __init__(self, codecs: Iterable[Codec]) -> None:
        self._by_type: dict[str, Codec] = {}
        for codec in codecs:
            for name in codec.media_types:
                self._by_type[name.lower()] = codec  # as media_type() gives it
        if not self._by_type:
            raise ValueError("CodecNegotiation needs at least one codec")
        self.accepted: Sequence[str] = tuple(self._by_type)
        # Header values already negotiated, as sent: a client sends the same
        # one on every request, so most are found here without parsing.
        # Bounded by _KNOWN_VALUES and _KNOWN_VALUE_LENGTH, whatever clients
        # send; refused values are never kept.
        self._by_value: dict[str | None, Codec] = {name: codec for name, codec in self._by_type.items()}

    def negotiate(self, content_type: str | None) -> Codec:
        codec = self._by_value.get(content_type)
        if codec is not None:
            return codec
        codec = self._by_type.get(repeated_media_type(content_type or "") or media_type(content_type))
        if codec is None:
            got = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
            raise IngestError(415, f"unsupported media type: got {got}; send one of {', '.join(self.accepted)}")
        known = self._by_value
        if content_type and len(content_type) <= _KNOWN_VALUE_LENGTH and len(known) < _KNOWN_VALUES:
            known[content_type] = codec
        return codec
