"""OTLP log records as events: the two codecs of OTLP/HTTP logs.

An ``ExportLogsServiceRequest`` holds resources, each holding scopes, each
holding log records. Every ``LogRecord`` becomes one event object (see
``docs/otlp.md`` for the mapping): its own fields under their protobuf names,
``trace_id`` and ``span_id`` as lower-case hex, ``body`` and attribute values
as JSON values, the scope's fields under ``scope``, the resource's attributes
under ``resource`` and its schema URL and dropped count beside them. A field
at its proto3 default (zero, empty) is left out, as the wire leaves it out.

:class:`OTLPProtobufCodec` decodes binary protobuf with the official
generated classes (``opentelemetry-proto``); :class:`OTLPJSONCodec` decodes
the OTLP JSON mapping with orjson. A body that does not decode is a 400; a
record that cannot be stored (a malformed id, a value of the wrong type in
JSON, a record over ``max_record_bytes``) is refused on its own, its
neighbours kept, and counted in the answer's ``partial_success``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]  # (googleapis-common-protos has no stubs)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from .batch import event_json
from .codecs import Decoded, InvalidEvent
from .errors import IngestError
from .eventcaps import EventCaps
from .headers import byte_size
from .otlp import MAX_SHARED_BYTES

__all__ = [
    "ExportLogsPartialSuccess",
    "ExportLogsServiceRequest",
    "ExportLogsServiceResponse",
    "OTLPCodec",
    "OTLPDecoded",
    "OTLPJSONCodec",
    "OTLPProtobufCodec",
    "SERVICE_NAME",
    "SERVICE_NAMESPACE",
    "Status",
    "TIME_FIELDS",
]

Event = dict[str, Any]

#: The resource attributes that name a batch's ``service`` and ``namespace``
#: (OpenTelemetry's semantic conventions).
SERVICE_NAME = "service.name"
SERVICE_NAMESPACE = "service.namespace"

#: How deep the official protobuf decoder (upb) nests messages before it refuses a body.
PROTOBUF_MAX_DEPTH = 100
#: So how deep an event can nest: three messages stand before a resource's
#: first value (the request, its ResourceLogs, the Resource) and each level
#: below takes two at least (an AnyValue and its ArrayValue).
PROTOBUF_NESTS_AT_MOST = 2 + (PROTOBUF_MAX_DEPTH - 3) // 2

#: The lengths the OTLP specification gives the ids (an empty id means none).
TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8

#: The event keys of a record's times, in the order the stored time is taken from.
TIME_FIELDS = ("time_unix_nano", "observed_time_unix_nano")


@dataclass(slots=True)
class OTLPDecoded(Decoded):
    """A decoded request's events, plus the ``service`` and ``namespace`` of its
    resources when they all name the same one (``None`` otherwise: each event
    keeps its own resource's attributes under ``resource``)."""

    service: str | None = None
    namespace: str | None = None
    #: A warning for ``partial_success.error_message`` when nothing was
    #: refused (the specification's use of it with zero rejected): why a
    #: request that is not empty stored nothing.
    note: str | None = None


class _Refused(Exception):
    """One record cannot be stored: ``reason`` says why (caught per record).
    A resource or scope whose attributes cannot be read is this too, and
    refuses each of its records (partial success, as for a record's own)."""

    def __init__(self, reason: str) -> None:
        self.why = reason
        #: The keys of the attributes it is under, innermost first (a nested
        #: kvlist adds one a level: the path is written once, when read).
        self.keys: list[str] = []

    @property
    def reason(self) -> str:
        """Why, under the path of attributes it is in (the first key and the
        last two of a deeper one: a few hundred characters at most)."""
        keys = self.keys
        if not keys:
            return self.why
        shown = [_quoted(key) for key in (keys[::-1] if len(keys) <= 3 else (keys[-1], keys[1], keys[0]))]
        if len(keys) > 3:
            shown.insert(1, f"... ({len(keys)} levels)")
        return f"attribute {' > '.join(shown)}: {self.why}"

    def under(self, key: str) -> _Refused:
        """This refusal as one of the attribute ``key`` (it holds the refused value)."""
        self.keys.append(key)
        return self

    def of(self, what: str) -> _Refused:
        """This refusal as one of ``what`` (a resource's, a scope's)."""
        return _Refused(f"{what}: {self.reason}")


class _Services:
    """The one ``service.name`` and ``service.namespace`` the resources of a request agree on."""

    __slots__ = ("service", "namespace", "seen")

    def __init__(self) -> None:
        self.service: str | None = None
        self.namespace: str | None = None
        self.seen = False

    def add(self, resource: Event) -> None:
        service = resource.get(SERVICE_NAME)
        namespace = resource.get(SERVICE_NAMESPACE)
        service = service if isinstance(service, str) and service else None
        namespace = namespace if isinstance(namespace, str) and namespace else None
        if not self.seen:
            self.service, self.namespace, self.seen = service, namespace, True
            return
        if service != self.service:
            self.service = None
        if namespace != self.namespace:
            self.namespace = None


# --- binary protobuf ------------------------------------------------------------


def _bytes_json(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _pb_value(value: AnyValue) -> Any:
    """An ``AnyValue`` as a JSON value (``None`` when unset)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":  # by far the most common: first
        return value.string_value
    if kind is None:
        return None
    if kind == "kvlist_value":
        return _pb_attributes(value.kvlist_value.values)
    if kind == "array_value":
        return [_pb_value(item) for item in value.array_value.values[:]]
    if kind == "bytes_value":
        return _bytes_json(value.bytes_value)
    if kind == "string_value_strindex":  # a profiles dictionary index: nothing to resolve it against in logs
        raise _Refused("an AnyValue holds string_value_strindex, which log records do not use")
    return getattr(value, kind)


def _pb_attributes(attributes: Sequence[KeyValue]) -> Event:
    found: Event = {}
    # A slice, not the container itself: upb's repeated fields have no __iter__,
    # so iterating one ends in an IndexError raised and caught every time.
    for kv in attributes[:]:
        value = kv.value
        # A string or an integer, most attributes' kinds, without a call: a oneof
        # holds one member, so a non-empty string or a non-zero int is the value.
        found[kv.key] = value.string_value or value.int_value or _pb_value(value)
    return found


def _pb_about(logs: Any, entity: Any, found: Event, prefix: str = "") -> Event:
    """``found`` with the schema URL of ``logs`` (a ``ResourceLogs`` or
    ``ScopeLogs``) and the dropped-attributes count of its ``entity`` (the
    resource or scope), under their names after ``prefix``."""
    if value := logs.schema_url:
        found[prefix + "schema_url"] = value
    if value := entity.dropped_attributes_count:
        found[prefix + "dropped_attributes_count"] = value
    return found


def _pb_resource(resource_logs: Any) -> tuple[Event | _Refused, Event]:
    """A resource's attributes, and what else it says (its records' own keys)."""
    fields = _pb_about(resource_logs, resource_logs.resource, {}, "resource_")
    try:
        return _pb_attributes(resource_logs.resource.attributes), fields
    except _Refused as refused:
        return refused, fields


def _pb_scope(scope_logs: Any) -> Event | _Refused:
    scope = scope_logs.scope
    found: Event = {}
    if scope.name:
        found["name"] = scope.name
    if scope.version:
        found["version"] = scope.version
    if scope.attributes:
        try:
            found["attributes"] = _pb_attributes(scope.attributes)
        except _Refused as refused:
            return refused
    return _pb_about(scope_logs, scope, found)


def _pb_record(record: Any, scope: Event, resource: Event) -> Event:
    event: Event = {}
    # Each field read once, in the mapping's order: this runs for every record.
    if value := record.time_unix_nano:
        event["time_unix_nano"] = value
    if value := record.observed_time_unix_nano:
        event["observed_time_unix_nano"] = value
    if value := record.severity_number:
        event["severity_number"] = value
    if value := record.severity_text:
        event["severity_text"] = value
    body = record.body
    if value := body.string_value:  # a string body, the common case, without a call
        event["body"] = value
    elif record.HasField("body"):
        event["body"] = _pb_value(body)
    if value := record.attributes:
        event["attributes"] = _pb_attributes(value)
    if value := record.dropped_attributes_count:
        event["dropped_attributes_count"] = value
    if value := record.flags:
        event["flags"] = value
    if value := record.trace_id:
        if len(value) != TRACE_ID_BYTES:
            raise _Refused(f"trace_id is {len(value)} bytes long, not {TRACE_ID_BYTES}")
        event["trace_id"] = value.hex()
    if value := record.span_id:
        if len(value) != SPAN_ID_BYTES:
            raise _Refused(f"span_id is {len(value)} bytes long, not {SPAN_ID_BYTES}")
        event["span_id"] = value.hex()
    if value := record.event_name:
        event["event_name"] = value
    if scope:
        event["scope"] = scope
    if resource:
        event["resource"] = resource
    return event


# --- the OTLP JSON mapping ------------------------------------------------------


#: A number as JSON writes it, for a double sent as a string.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
#: The most digits of any integer field's range (2**64 - 1 has 20).
_MOST_DIGITS = 20
#: Floats are exact integers below this: a JSON number past it may have been rounded.
_EXACT_FLOAT = 2.0**53

_INT64 = (-(2**63), 2**63 - 1)
_UINT32 = (0, 2**32 - 1)
#: The range of each integer field of the mapping, as its protobuf type gives it
#: (a JSON number or string can say more than the protocol can carry).
_INT_RANGES = {
    "intValue": _INT64,  # int64
    "timeUnixNano": (0, 2**64 - 1),  # fixed64
    "observedTimeUnixNano": (0, 2**64 - 1),
    "severityNumber": (-(2**31), 2**31 - 1),  # an enum: int32
    "droppedAttributesCount": _UINT32,  # uint32
    "flags": _UINT32,  # fixed32
}
_INT64_MIN, _INT64_MAX = _INT64
_UINT32_MAX = _UINT32[1]


def _json_int(value: Any, name: str) -> int:
    """A protobuf integer in JSON: a number, or a decimal string (64-bit ones),
    within the range of the field's protobuf type."""
    kind = type(value)
    number: int | None = None
    if kind is str:
        # ASCII digits after a minus sign at most: int() would take " 12", "1_000"
        # and other scripts' digits too (str methods: a regex costs a record 4 times as much).
        digits = value[1:] if value[:1] == "-" else value
        if digits.isdigit() and digits.isascii():
            if len(digits) > _MOST_DIGITS and len(significant := digits.lstrip("0")) > _MOST_DIGITS:
                # (int() refuses past 4,300 digits; every range here fits in 20)
                raise _Refused(
                    f"{name} is a number of {len(significant)} digits, out of the range of its protobuf type"
                )
            number = int(value)
    elif kind is int:
        number = value
    elif kind is float and value.is_integer():
        if abs(value) >= _EXACT_FLOAT:  # the JSON number was rounded on the way: which one was sent?
            raise _Refused(f"{name} is {value!r}, a number too large to be exact in JSON: send it as a string")
        number = int(value)
    if number is None:
        raise _Refused(f"{name} is {_quoted(value)}, not an integer")
    low, high = _INT_RANGES[name]
    if not low <= number <= high:
        raise _Refused(f"{name} is {number}, out of the range of its protobuf type ({low} to {high})")
    return number


#: How much of a refused value a refusal quotes: the partial success that
#: names ten of them stays small whatever the values (the specification asks
#: the server to bound its answers; 4 MiB is its recommended limit).
_QUOTED_CHARS = 40


def _quoted(value: Any) -> str:
    """``value`` for a refusal: a string's first :data:`_QUOTED_CHARS`
    characters, an object or an array by its kind (its repr could be
    megabytes, or nest past what repr can walk), anything else as JSON
    writes it (``true``, ``null``, ``1.5``)."""
    kind = type(value)
    if kind is str:
        if len(value) <= _QUOTED_CHARS:
            return repr(value)
        return f"{value[:_QUOTED_CHARS]!r}... ({len(value)} characters)"
    if kind is dict:
        return "an object"
    if kind is list:
        return "an array"
    return orjson.dumps(value).decode()


def _json_str(value: Any, name: str) -> str:
    if type(value) is str:
        return value
    raise _Refused(f"{name} is not a string")


def _json_object(value: Any, name: str) -> Event:
    if type(value) is dict:
        return value
    raise _Refused(f"{name} is not an object")


def _json_list(value: Any, name: str) -> list[Any]:
    if type(value) is list:
        return value
    raise _Refused(f"{name} is not an array")


#: A double in JSON may be one of these strings (proto3 JSON mapping).
_JSON_DOUBLES = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _json_double(value: Any) -> float:
    if type(value) in (int, float):
        return float(value)
    if type(value) is str:
        if value in _JSON_DOUBLES:
            return _JSON_DOUBLES[value]
        if _JSON_NUMBER.fullmatch(value):  # float() would take "nan", "inf", " 1.5" and "1_0.5" too
            return float(value)
    raise _Refused(f"doubleValue is {_quoted(value)}, not a number")


#: The URL-safe base64 alphabet's two letters as the standard one writes
#: them, and line breaks and spaces dropped (a MIME encoder wraps its lines;
#: protobuf's own JSON parser reads them).
_URL_SAFE_BASE64 = str.maketrans("-_", "+/", " \t\r\n")


def _json_bytes(value: Any) -> str:
    """A ``bytesValue``: base64 (standard or URL-safe, padded or not, its
    lines wrapped or not, as protobuf's JSON parser reads it), stored as a
    protobuf body's bytes are, standard and padded; anything else refuses
    its record."""
    text = _json_str(value, "bytesValue").translate(_URL_SAFE_BASE64)
    try:
        decoded = binascii.a2b_base64(text + "=" * (-len(text) % 4), strict_mode=True)
    except (binascii.Error, ValueError):  # ValueError: not ASCII
        raise _Refused("bytesValue is not base64") from None
    return _bytes_json(decoded)


def _json_value(value: Any) -> Any:
    """An ``AnyValue`` in the OTLP JSON mapping as a JSON value (``None`` when
    unset). A member that is ``null`` is unset, as protobuf's JSON parser
    reads it (the proto3 mapping: null is the field's default)."""
    if type(value) is not dict:
        raise _Refused("an AnyValue is not an object")
    get = value.get
    if (found := get("stringValue")) is not None:
        return _json_str(found, "stringValue")
    if (found := get("intValue")) is not None:
        return _json_int(found, "intValue")
    if (found := get("boolValue")) is not None:
        if type(found) is not bool:
            raise _Refused("boolValue is not true or false")
        return found
    if (found := get("doubleValue")) is not None:
        return _json_double(found)
    if (found := get("kvlistValue")) is not None:
        return _json_attributes(_json_values(found, "kvlistValue"))
    if (found := get("arrayValue")) is not None:
        return [_json_value(item) for item in _json_list(_json_values(found, "arrayValue"), "arrayValue.values")]
    if (found := get("bytesValue")) is not None:
        return _json_bytes(found)
    if get("stringValueStrindex") is not None:
        raise _Refused("an AnyValue holds stringValueStrindex, which log records do not use")
    return None  # no value set (or only fields this mapping does not know, which are ignored)


def _json_values(found: Any, name: str) -> Any:
    """The ``values`` of a kvlist or array value (absent or ``null``: none)."""
    values = _json_object(found, name).get("values")
    return [] if values is None else values


def _json_attribute(kv: Any) -> tuple[str, Any]:
    """One ``KeyValue`` as a key and a JSON value, every check written out."""
    if type(kv) is not dict:
        raise _Refused("an attribute is not an object")
    key = kv.get("key", "")
    if type(key) is not str:
        raise _Refused("an attribute's key is not a string")
    value = kv.get("value")
    try:
        return key, _json_value({} if value is None else value)
    except _Refused as refused:
        raise refused.under(key) from None


def _json_attributes(attributes: Any) -> Event:
    if type(attributes) is not list:
        raise _Refused("attributes is not an array")
    found: Event = {}
    for kv in attributes:
        # A string or an integer under a string key, most attributes, in the
        # fewest operations: what _json_value answers for them, without a call
        # (a missing key or a value of another shape lands in _json_attribute).
        try:
            key = kv["key"]
            value = kv["value"]
            if "stringValue" in value:
                text = value["stringValue"]
                if type(text) is str and type(key) is str:
                    found[key] = text
                    continue
            elif "intValue" in value and type(key) is str:
                number = value["intValue"]
                in_range = type(number) is int and _INT64_MIN <= number <= _INT64_MAX
                found[key] = number if in_range else _json_int(number, "intValue")
                continue
        except (KeyError, TypeError):
            pass
        except _Refused as refused:  # an intValue out of range, under a string key
            raise refused.under(key) from None
        key, value = _json_attribute(kv)
        found[key] = value
    return found


def _json_id(value: Any, name: str, size: int) -> str:
    """A non-empty id in hex (any case), as lower-case hex."""
    if type(value) is str and len(value) == 2 * size:
        try:
            found = bytes.fromhex(value)
        except ValueError:
            pass
        else:
            if len(found) == size:  # fromhex skips whitespace: "00 11 …" is shorter
                return found.hex()
    raise _Refused(f"{name} must be {2 * size} hex digits ({size} bytes)")


def _json_about(logs: Event, entity: Event, found: Event, prefix: str = "") -> Event:
    """``found`` with the schema URL of ``logs`` (a ``resourceLogs`` or
    ``scopeLogs`` element) and the dropped-attributes count of its ``entity``
    (the resource or scope), under their names after ``prefix``; raises
    :class:`_Refused` for a value of the wrong type."""
    schema_url = logs.get("schemaUrl")
    if schema_url is not None and schema_url != "":
        found[prefix + "schema_url"] = _json_str(schema_url, "schemaUrl")
    dropped = entity.get("droppedAttributesCount")
    if dropped is not None and (dropped := _json_int(dropped, "droppedAttributesCount")):
        found[prefix + "dropped_attributes_count"] = dropped
    return found


def _json_resource(resource_logs: Event) -> tuple[Event | _Refused, Event | _Refused]:
    """A resource's attributes, and what else it says (its records' own keys)."""
    # A null is a field not set, as the proto3 JSON mapping reads it.
    try:
        resource = _json_object(_unset_as(resource_logs.get("resource"), {}), "resource")
        attributes: Event | _Refused = _json_attributes(_unset_as(resource.get("attributes"), []))
    except _Refused as refused:
        return refused, {}
    try:
        return attributes, _json_about(resource_logs, resource, {}, "resource_")
    except _Refused as refused:
        return attributes, refused


def _json_scope(scope_logs: Event) -> Event | _Refused:
    found: Event = {}
    try:
        scope = _json_object(_unset_as(scope_logs.get("scope"), {}), "scope")
        name, version = scope.get("name"), scope.get("version")
        if name is not None and name != "":  # unset (a 0 or a false is a wrong type, refused)
            found["name"] = _json_str(name, "scope.name")
        if version is not None and version != "":
            found["version"] = _json_str(version, "scope.version")
        attributes = scope.get("attributes")
        if attributes is not None and attributes != []:
            found["attributes"] = _json_attributes(attributes)
        return _json_about(scope_logs, scope, found)
    except _Refused as refused:
        return refused


def _unset_as(value: Any, default: Any) -> Any:
    """``value``, or ``default`` for a field not set (absent or null)."""
    return default if value is None else value


def _json_body(value: Any) -> Any:
    """A record's ``body``, its refusal naming it."""
    try:
        return _json_value(value)
    except _Refused as refused:
        raise refused.of("body") from None


def _json_record(record: Any, scope: Event, resource: Event) -> Event:
    if type(record) is not dict:
        raise _Refused("the log record is not an object")
    event: Event = {}
    get = record.get
    # Each field written out, its common form first: this runs for every record.
    value = get("timeUnixNano")
    if value is not None and (value := _json_int(value, "timeUnixNano")):
        event["time_unix_nano"] = value
    value = get("observedTimeUnixNano")
    if value is not None and (value := _json_int(value, "observedTimeUnixNano")):
        event["observed_time_unix_nano"] = value
    value = get("severityNumber")  # an enum: its integer (OTLP JSON allows no names); 0-24 the named ones
    if value is not None and (
        value := value if type(value) is int and 0 <= value <= 24 else _json_int(value, "severityNumber")
    ):
        event["severity_number"] = value
    value = get("severityText")
    if value:
        event["severity_text"] = value if type(value) is str else _json_str(value, "severityText")
    value = get("body")
    if value is not None:
        text = value.get("stringValue") if type(value) is dict and len(value) == 1 else None
        event["body"] = text if type(text) is str else _json_body(value)
    value = get("attributes")
    if value:
        event["attributes"] = _json_attributes(value)
    value = get("droppedAttributesCount")
    if value is not None and (value := _json_int(value, "droppedAttributesCount")):
        event["dropped_attributes_count"] = value
    value = get("flags")
    if value is not None and (
        value := value if type(value) is int and 0 <= value <= _UINT32_MAX else _json_int(value, "flags")
    ):
        event["flags"] = value
    value = get("traceId")
    if value:
        event["trace_id"] = _json_id(value, "traceId", TRACE_ID_BYTES)
    value = get("spanId")
    if value:
        event["span_id"] = _json_id(value, "spanId", SPAN_ID_BYTES)
    value = get("eventName")
    if value:
        event["event_name"] = _json_str(value, "eventName")
    if scope:
        event["scope"] = scope
    if resource:
        event["resource"] = resource
    return event


def _json_envelope(value: Any, name: str) -> list[Any]:
    """A list of the envelope (resourceLogs, scopeLogs, logRecords): absent is empty."""
    if value is None:
        return []
    if type(value) is not list:
        raise IngestError(400, f"{name} must be an array")
    return value


# --- the codecs -------------------------------------------------------------------


def _stored_size(attributes: Event | _Refused) -> int:
    """The bytes a resource's or scope's fields add to each record stored with them."""
    if not attributes or isinstance(attributes, _Refused):
        return 0
    return len(event_json(attributes))


class OTLPCodec:
    """What both OTLP codecs share: the walk through resources, scopes and
    records, the per-record limit, and keeping a refused record's neighbours.
    Each codec parses its encoding (:meth:`parse`), says where the records
    are (:meth:`resources`) and how to map one (:attr:`to_event`), and
    writes the answers in its encoding (:meth:`encode`), as the
    specification asks."""

    media_types: Sequence[str] = ()
    #: The Content-Type of answers in this encoding.
    response_type = ""
    #: How deep this encoding's decoder lets an event nest (see :attr:`Decoded.nests_at_most`).
    nests_at_most: int | None = None

    def __init__(
        self,
        *,
        max_record_bytes: int,
        caps: EventCaps | None = None,
        # What copies of resources and scopes may add to a request's stored events.
        max_shared_bytes: int = MAX_SHARED_BYTES,
    ) -> None:
        for name, value in (("max_record_bytes", max_record_bytes), ("max_shared_bytes", max_shared_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive number of bytes, not {value!r}")
        self.max_record_bytes = max_record_bytes
        self.max_shared_bytes = max_shared_bytes
        self.caps = caps or EventCaps()

    def _too_much_shared(self) -> IngestError:
        return IngestError(
            413,
            f"the records of this request would store more than {byte_size(self.max_shared_bytes)} of resource and"
            " scope attributes, a copy with each record (max_shared_bytes): send fewer records under a large"
            " resource, or a smaller resource",
        )

    def parse(self, body: bytes) -> Any:
        """The whole request, decoded; 400 for a body that does not decode."""
        raise NotImplementedError

    def resources(
        self, request: Any
    ) -> Iterator[tuple[Event | _Refused, Event | _Refused, Iterator[tuple[Event | _Refused, Iterable[Any]]]]]:
        """Each resource's attributes, what else it says (its records' keys:
        ``resource_schema_url``, ``resource_dropped_attributes_count``), and
        its scopes: each scope as an event holds it, with its records. 400 for
        an envelope of the wrong shape."""
        raise NotImplementedError

    def record_size(self, record: Any) -> int:
        """The size of one record as sent."""
        raise NotImplementedError

    #: ``to_event(record, scope, resource)``: one record as an event; raises
    #: :class:`_Refused` for a record that cannot be stored.
    to_event: Callable[[Any, Event, Event], Event]

    def decode(self, body: bytes) -> OTLPDecoded:
        request = self.parse(body)
        # A record can be larger than the limit only if the body is.
        limit = self.max_record_bytes if len(body) > self.max_record_bytes else 0
        record_size, to_event = self.record_size, type(self).to_event
        events: list[Event] = []
        invalid: list[InvalidEvent] = []
        services = _Services()
        index = 0
        append = events.append
        max_events = self.caps.max_events
        shared_left = self.max_shared_bytes  # what copies of resources and scopes may still add
        for resource, fields, scopes in self.resources(request):
            # The batch's service is that of the resources whose records are stored.
            named = isinstance(resource, _Refused)
            resource_size = _stored_size(resource) + _stored_size(fields)
            for scope, records in scopes:
                # (what refuses a resource or a scope is said once, here, for both encodings)
                if isinstance(resource, _Refused):
                    refused_with: _Refused | None = resource.of("the resource's attributes")
                elif isinstance(fields, _Refused):
                    refused_with = fields.of("the resource")
                elif isinstance(scope, _Refused):
                    refused_with = scope.of("the scope")
                else:
                    refused_with = None
                shared = resource_size + _stored_size(scope)
                for record in records:
                    if index >= max_events:  # before mapping the rest: what mapping costs is the attack
                        raise self.caps.too_many()
                    if refused_with is not None:
                        invalid.append(InvalidEvent(index, refused_with.reason))
                        index += 1
                        continue
                    if limit and (size := record_size(record)) > limit:
                        reason = f"the log record is {size} bytes, over the limit of {limit}"
                        invalid.append(InvalidEvent(index, reason, "too_large"))
                    else:
                        try:
                            event = to_event(record, scope, resource)  # type: ignore[arg-type]  # (not refused)
                        except _Refused as refused:
                            invalid.append(InvalidEvent(index, refused.reason))
                        else:
                            if fields:  # the resource's schema URL, dropped count: beside its attributes
                                event.update(fields)  # type: ignore[arg-type]  # (not refused)
                            append(event)
                            shared_left -= shared  # a stored record holds its copies
                            if shared_left < 0:
                                raise self._too_much_shared()
                            if not named:
                                services.add(resource)  # type: ignore[arg-type]  # (not refused)
                                named = True
                    index += 1
        note = self.unread(request) if index == 0 else None
        # Not plain: every record of a scope holds the same scope and resource objects.
        return OTLPDecoded(events, invalid or (), False, self.nests_at_most, services.service, services.namespace, note)

    def unread(self, request: Any) -> str | None:
        """Why a request that holds no record at all may be mistaken: a note
        for the client, or ``None`` when it is simply empty."""
        return None

    def encode(self, message: Message) -> bytes:
        raise NotImplementedError


class OTLPProtobufCodec(OTLPCodec):
    """``application/x-protobuf``: a binary ``ExportLogsServiceRequest``."""

    media_types = ("application/x-protobuf", "application/protobuf")
    response_type = "application/x-protobuf"
    nests_at_most = PROTOBUF_NESTS_AT_MOST
    to_event = staticmethod(_pb_record)

    def parse(self, body: bytes) -> Any:
        try:
            return ExportLogsServiceRequest.FromString(body)
        except DecodeError as error:
            if "MaxDepth" in str(error):
                # The official decoder's own guard (100 messages deep, as in C++ and
                # Java): a kvlist value is three messages, an array value two.
                raise IngestError(
                    400,
                    f"the body nests deeper than the protobuf decoder takes ({PROTOBUF_MAX_DEPTH} messages deep:"
                    " about 32 levels of kvlist values, or 48 of arrays, in a record): flatten the record",
                ) from None
            raise IngestError(400, f"the body is not a protobuf ExportLogsServiceRequest: {error}") from None

    def resources(
        self, request: Any
    ) -> Iterator[tuple[Event | _Refused, Event | _Refused, Iterator[tuple[Event | _Refused, Iterable[Any]]]]]:
        for resource_logs in request.resource_logs:
            scopes = ((_pb_scope(scope_logs), scope_logs.log_records) for scope_logs in resource_logs.scope_logs)
            yield *_pb_resource(resource_logs), scopes

    def record_size(self, record: Any) -> int:
        return int(record.ByteSize())

    def encode(self, message: Message) -> bytes:
        return message.SerializeToString()


#: The fields of the envelope's levels, as the JSON mapping names them.
_ENVELOPE_NAMES = (
    frozenset(("resourceLogs",)),
    frozenset(("resource", "scopeLogs", "schemaUrl")),
    frozenset(("scope", "logRecords", "schemaUrl")),
)
#: How many unread names a note quotes.
_UNREAD_NAMES_SHOWN = 3


def _unread_envelope_names(request: Event) -> list[str]:
    """The keys of the envelope (the request, its resourceLogs, their
    scopeLogs) that the JSON mapping does not name: the first few, each once."""
    found: dict[str, None] = {}
    level: list[Any] = [request]
    for known, inner in zip(_ENVELOPE_NAMES, ("resourceLogs", "scopeLogs", None)):
        for item in level:
            if type(item) is dict:
                for name in item:
                    if name not in known:
                        found[name] = None
                        if len(found) == _UNREAD_NAMES_SHOWN:
                            return list(found)
        if inner is None:
            break
        level = [one for item in level if type(item) is dict and type(item.get(inner)) is list for one in item[inner]]
    return list(found)


class OTLPJSONCodec(OTLPCodec):
    """``application/json``: an ``ExportLogsServiceRequest`` in the OTLP JSON
    mapping (lowerCamelCase keys, hex ids, 64-bit integers as strings or
    numbers, enums as integers); unknown keys are ignored, as the
    specification requires."""

    media_types = ("application/json",)
    response_type = "application/json"
    to_event = staticmethod(_json_record)

    def parse(self, body: bytes) -> Any:
        self.caps.check_json(body)
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise IngestError(400, f"the body is not JSON: {error}") from None
        if type(request) is not dict:
            raise IngestError(400, "the body must be a JSON object (an ExportLogsServiceRequest)")
        return request

    def resources(
        self, request: Any
    ) -> Iterator[tuple[Event | _Refused, Event | _Refused, Iterator[tuple[Event | _Refused, Iterable[Any]]]]]:
        for resource_logs in _json_envelope(request.get("resourceLogs"), "resourceLogs"):
            if type(resource_logs) is not dict:
                raise IngestError(400, "every element of resourceLogs must be an object")
            yield *_json_resource(resource_logs), self._scopes(resource_logs)

    @staticmethod
    def _scopes(resource_logs: Event) -> Iterator[tuple[Event | _Refused, Iterable[Any]]]:
        for scope_logs in _json_envelope(resource_logs.get("scopeLogs"), "scopeLogs"):
            if type(scope_logs) is not dict:
                raise IngestError(400, "every element of scopeLogs must be an object")
            yield _json_scope(scope_logs), _json_envelope(scope_logs.get("logRecords"), "logRecords")

    def unread(self, request: Any) -> str | None:
        # The mistake worth a note: fields named as the .proto files name them
        # (resource_logs, log_records), which the JSON mapping does not read.
        names = _unread_envelope_names(request)
        if not names:
            return None
        shown = ", ".join(map(_quoted, names))
        return (
            f"no log record in this request: it names {shown}, which OTLP JSON does not read"
            " (its field names are lowerCamelCase: resourceLogs, scopeLogs, logRecords)"
        )

    def record_size(self, record: Any) -> int:
        try:
            return len(orjson.dumps(record))
        except orjson.JSONEncodeError:  # nested past the 254 levels orjson writes, in a field of any name
            return len(event_json(record))  # the same compact text, by the slow writer

    def encode(self, message: Message) -> bytes:
        return orjson.dumps(MessageToDict(message))
