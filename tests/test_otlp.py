"""OTLP/HTTP logs, bodies made by hand in protobuf and in JSON, through both
adapters under a mount prefix; every answer decoded back with the protobuf classes."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import zlib
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from clients import PREFIX, make_client
from google.protobuf.json_format import MessageToDict, Parse
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from sinks_for_tests import FailingSink

from ingest_mw import ASGIApp, BaselimeAPI, BetterStackAPI, MemorySink, OTLPLogsAPI, RateLimit
from ingest_mw.otlp import PATH_BESIDE_BASELIME

TOKEN = "otlp-token"
URL = PREFIX + "/v1/logs"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
TRACE_ID = bytes(range(16))
SPAN_ID = bytes(range(8, 16))
NOW_NS = 1_796_130_000_123_456_789  # 2026-12-01T13:00:00.123456789Z


def headers(content_type=PROTOBUF, token=TOKEN, **extra):
    found = {"Content-Type": content_type, **extra}
    if token is not None:
        found["Authorization"] = f"Bearer {token}"
    return found


def value(v):
    """A Python value as an AnyValue."""
    found = AnyValue()
    if isinstance(v, str):
        found.string_value = v
    elif isinstance(v, bool):
        found.bool_value = v
    elif isinstance(v, int):
        found.int_value = v
    elif isinstance(v, float):
        found.double_value = v
    elif isinstance(v, bytes):
        found.bytes_value = v
    elif isinstance(v, list):
        found.array_value.values.extend(value(item) for item in v)
    elif isinstance(v, dict):
        found.kvlist_value.values.extend(KeyValue(key=k, value=value(item)) for k, item in v.items())
    return found


def attrs(mapping):
    return [KeyValue(key=k, value=value(v)) for k, v in mapping.items()]


def export(*resources):
    """An ExportLogsServiceRequest from (resource attributes, [(scope name, version, [LogRecord])])."""
    request = ExportLogsServiceRequest()
    for resource, scopes in resources:
        resource_logs = request.resource_logs.add()
        resource_logs.resource.attributes.extend(attrs(resource))
        for name, version, records in scopes:
            scope_logs = resource_logs.scope_logs.add()
            scope_logs.scope.name = name
            scope_logs.scope.version = version
            scope_logs.log_records.extend(records)
    return request


def full_record():
    return LogRecord(
        time_unix_nano=NOW_NS,
        observed_time_unix_nano=NOW_NS + 5_000,
        severity_number=17,
        severity_text="ERROR",
        body=value({"msg": "payment failed", "codes": [402, 3.5, True, None], "raw": b"\x00\xff"}),
        attributes=attrs({"http.status_code": 402, "user": "u1", "retry": False, "ratio": 0.25}),
        dropped_attributes_count=2,
        flags=1,
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        event_name="payment.failed",
    )


#: The event full_record() becomes, under the resource and scope of one_request().
FULL_EVENT = {
    "time_unix_nano": NOW_NS,
    "observed_time_unix_nano": NOW_NS + 5_000,
    "severity_number": 17,
    "severity_text": "ERROR",
    "body": {"msg": "payment failed", "codes": [402, 3.5, True, None], "raw": base64.b64encode(b"\x00\xff").decode()},
    "attributes": {"http.status_code": 402, "user": "u1", "retry": False, "ratio": 0.25},
    "dropped_attributes_count": 2,
    "flags": 1,
    "trace_id": TRACE_ID.hex(),
    "span_id": SPAN_ID.hex(),
    "event_name": "payment.failed",
    "scope": {"name": "shop.payments", "version": "2.1.0"},
    "resource": {"service.name": "checkout", "service.namespace": "shop", "host.name": "web-1"},
}
RESOURCE = {"service.name": "checkout", "service.namespace": "shop", "host.name": "web-1"}


def one_request(*records):
    return export((RESOURCE, [("shop.payments", "2.1.0", list(records))]))


def as_json(request):
    """The OTLP JSON mapping of a request: protobuf's JSON with hex ids (the OTLP deviation)."""
    found = MessageToDict(request, use_integers_for_enums=True)  # OTLP JSON allows no enum names
    for resource_logs in found.get("resourceLogs", []):
        for scope_logs in resource_logs.get("scopeLogs", []):
            for record in scope_logs.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64decode(record[key]).hex().upper()  # case-insensitive
    return orjson.dumps(found)


def encode(request, content_type):
    return request.SerializeToString() if content_type == PROTOBUF else as_json(request)


def answer(reply, message_type):
    """The reply's body as ``message_type``, read in the encoding the reply says it is in."""
    content_type = reply.headers["content-type"]
    if content_type == PROTOBUF:
        return message_type.FromString(reply.body)
    assert content_type == JSON
    return Parse(reply.body, message_type())


def partial_success_of(client, resource_logs):
    """POST an OTLP JSON request of ``resource_logs``: it is answered 200; its partial success."""
    reply = client.request("POST", URL, json.dumps({"resourceLogs": resource_logs}).encode(), headers(JSON))
    assert reply.status == 200
    return answer(reply, ExportLogsServiceResponse).partial_success


@pytest.fixture
def client(adapter, sink):
    return make_client(adapter, OTLPLogsAPI({"web": TOKEN}), sink)


def events(sink):
    return [event.data for batch in sink.batches for event in batch.events]


# --- 200 and what is stored -----------------------------------------------------------


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_200_with_an_empty_response_and_every_field_mapped(client, sink, content_type):
    reply = client.request("POST", URL, encode(one_request(full_record()), content_type), headers(content_type))
    assert reply.status == 200
    assert reply.headers["content-type"] == content_type  # the request's encoding
    assert not answer(reply, ExportLogsServiceResponse).HasField("partial_success")
    assert events(sink) == [FULL_EVENT]
    (batch,) = sink.batches
    assert (batch.api, batch.source, batch.service, batch.namespace, batch.dataset) == (
        "otlp",
        "web",
        "checkout",
        "shop",
        None,
    )
    assert batch.events[0].time == datetime(2026, 12, 1, 13, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_the_schema_urls_and_dropped_counts_of_resources_and_scopes_are_kept(client, sink, content_type):
    # Every field of the envelope the data model defines is stored: the schema
    # URL of a resource's and of a scope's data, and how many attributes each
    # dropped, beside the record's own count.
    request = one_request(full_record())
    resource_logs = request.resource_logs[0]
    resource_logs.schema_url = "https://opentelemetry.io/schemas/1.26.0"
    resource_logs.resource.dropped_attributes_count = 3
    scope_logs = resource_logs.scope_logs[0]
    scope_logs.schema_url = "https://opentelemetry.io/schemas/1.24.0"
    scope_logs.scope.dropped_attributes_count = 4
    reply = client.request("POST", URL, encode(request, content_type), headers(content_type))
    assert reply.status == 200
    assert events(sink) == [
        {
            **FULL_EVENT,
            "scope": {
                "name": "shop.payments",
                "version": "2.1.0",
                "dropped_attributes_count": 4,
                "schema_url": "https://opentelemetry.io/schemas/1.24.0",
            },
            "resource_schema_url": "https://opentelemetry.io/schemas/1.26.0",
            "resource_dropped_attributes_count": 3,
        }
    ]


def test_a_resource_or_scope_whose_schema_url_or_dropped_count_is_wrong_refuses_its_records(adapter, sink):
    client = make_client(adapter, OTLPLogsAPI([TOKEN]), sink)
    record = {"body": {"stringValue": "r"}}
    partial = partial_success_of(
        client,
        [
            {"schemaUrl": 7, "scopeLogs": [{"logRecords": [record]}]},
            {"resource": {"droppedAttributesCount": -1}, "scopeLogs": [{"logRecords": [record]}]},
            {"scopeLogs": [{"schemaUrl": ["x"], "logRecords": [record]}]},
            {"scopeLogs": [{"scope": {"droppedAttributesCount": "many"}, "logRecords": [record]}]},
            {"schemaUrl": "", "scopeLogs": [{"schemaUrl": None, "logRecords": [{"body": {"stringValue": "ok"}}]}]},
        ],
    )
    assert partial.rejected_log_records == 4
    assert "record 0: the resource: schemaUrl is not a string" in partial.error_message
    assert "record 1: the resource: droppedAttributesCount is -1, out of the range" in partial.error_message
    assert "record 2: the scope: schemaUrl is not a string" in partial.error_message
    assert "record 3: the scope: droppedAttributesCount is 'many', not an integer" in partial.error_message
    assert events(sink) == [{"body": "ok"}]


def test_json_integers_as_strings_or_numbers_hex_in_any_case_and_unknown_keys_ignored(client, sink):
    body = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
                "futureField": {"anything": 1},
                "scopeLogs": [
                    {
                        "scope": {"name": "s"},
                        "logRecords": [
                            {
                                "timeUnixNano": str(NOW_NS),
                                "severityNumber": 9,
                                "body": {"stringValue": "a"},
                                "attributes": [
                                    {"key": "n", "value": {"intValue": "9007199254740993"}},
                                    {"key": "m", "value": {"intValue": 7}},
                                    {"key": "d", "value": {"doubleValue": "NaN"}},
                                ],
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "eee19b7ec3c1b174",
                                "flags": 1,
                                "newLogRecordField": True,
                            },
                            {"observedTimeUnixNano": NOW_NS, "body": {"intValue": "5"}},
                        ],
                    }
                ],
            }
        ]
    }
    reply = client.request("POST", URL, orjson.dumps(body), headers(JSON))
    assert reply.status == 200
    assert not answer(reply, ExportLogsServiceResponse).HasField("partial_success")
    first, second = events(sink)
    assert first["attributes"]["n"] == 9007199254740993  # exact: no float on the way
    assert first["attributes"]["m"] == 7
    assert first["attributes"]["d"] != first["attributes"]["d"]  # NaN
    assert (first["trace_id"], first["span_id"]) == ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")
    assert "newLogRecordField" not in first and "futureField" not in first
    assert second == {
        "observed_time_unix_nano": NOW_NS,
        "body": 5,
        "scope": {"name": "s"},
        "resource": {"service.name": "api"},
    }
    times = [event.time for event in sink.batches[0].events]
    assert times == [datetime(2026, 12, 1, 13, 0, 0, 123456, tzinfo=UTC)] * 2  # observed time when no time


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_time_falls_back_to_observed_then_reception_and_max_past_is_configurable(adapter, content_type):
    sink = MemorySink()
    now = datetime.now(UTC)
    old = int((now - timedelta(days=2)).timestamp() * 1e9)
    records = [LogRecord(time_unix_nano=old), LogRecord(observed_time_unix_nano=old), LogRecord(body=value("x"))]
    unbounded = make_client(adapter, OTLPLogsAPI([TOKEN]), sink)
    bounded = make_client(adapter, OTLPLogsAPI([TOKEN], max_past=timedelta(hours=1)), sink)
    for client in (unbounded, bounded):
        reply = client.request("POST", URL, encode(one_request(*records), content_type), headers(content_type))
        assert reply.status == 200
    day_old = datetime.fromtimestamp(old // 1000 / 1e6, UTC)
    first, second = sink.batches
    assert first.events.times[:2] == [day_old, day_old]
    assert first.events.times[2] == first.received_at  # no time at all: reception
    assert second.events.times == [second.received_at] * 3  # older than max_past: reception
    assert second.events[0].data["time_unix_nano"] == old  # the value is kept as sent


def test_small_nanosecond_times_are_nanoseconds_not_seconds(client, sink):
    reply = client.request(
        "POST", URL, encode(one_request(LogRecord(time_unix_nano=1_500_000_000)), PROTOBUF), headers()
    )
    assert reply.status == 200
    assert sink.batches[0].events[0].time == datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies(client, sink, content_type, encoding):
    raw = encode(one_request(full_record()), content_type)
    body = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    reply = client.request("POST", URL, body, headers(content_type, **{"Content-Encoding": encoding}))
    assert reply.status == 200
    assert events(sink) == [FULL_EVENT]


def test_resources_of_different_services_share_a_batch_without_a_service(client, sink):
    request = export(
        ({"service.name": "a", "service.namespace": "shop"}, [("s", "", [LogRecord(body=value("from a"))])]),
        ({"service.name": "b", "service.namespace": "shop"}, [("s", "", [LogRecord(body=value("from b"))])]),
    )
    assert client.request("POST", URL, request.SerializeToString(), headers()).status == 200
    (batch,) = sink.batches
    assert (batch.service, batch.namespace) == (None, "shop")
    assert [e.data["resource"]["service.name"] for e in batch.events] == ["a", "b"]


def test_a_resource_whose_records_are_all_refused_names_no_service(client, sink):
    # Its records are not in the batch: the batch's service is the stored records' one.
    refused = LogRecord(body=value("bad"), trace_id=b"short")
    request = export(
        ({"service.name": "gone"}, [("s", "", [refused])]),
        ({"service.name": "kept"}, [("s", "", [LogRecord(body=value("good"))])]),
    )
    assert client.request("POST", URL, request.SerializeToString(), headers()).status == 200
    (batch,) = sink.batches
    assert batch.service == "kept"


def test_an_empty_request_is_a_success_that_stores_nothing(client, sink):
    reply = client.request("POST", URL, b"", headers())
    assert reply.status == 200
    assert not answer(reply, ExportLogsServiceResponse).HasField("partial_success")
    assert sink.batches == []


@pytest.mark.parametrize(
    ("request_body", "names"),
    [
        ({"resource_logs": [{"scope_logs": []}]}, "'resource_logs'"),
        ({"resourceLogs": [{"scope_logs": [{"log_records": [{"body": {"stringValue": "x"}}]}]}]}, "'scope_logs'"),
        ({"resourceLogs": [{"scopeLogs": [{"log_records": [{}], "scope": {}}]}]}, "'log_records'"),
    ],
)
def test_json_fields_named_as_in_the_proto_files_are_a_warning_not_silence(client, sink, request_body, names):
    """The JSON mapping ignores names it does not know, as it must: a request
    that names its envelope's fields as the .proto files do (snake_case)
    stores nothing, and its 200 says why (zero rejected, a message: the
    specification's warning)."""
    reply = client.request("POST", URL, orjson.dumps(request_body), headers(JSON))
    assert reply.status == 200
    partial = answer(reply, ExportLogsServiceResponse).partial_success
    assert partial.rejected_log_records == 0
    assert partial.error_message == (
        f"no log record in this request: it names {names}, which OTLP JSON does not read"
        " (its field names are lowerCamelCase: resourceLogs, scopeLogs, logRecords)"
    )
    assert sink.batches == []


def test_a_record_nested_past_what_orjson_writes_is_measured_all_the_same(client, sink):
    """In a body over the record limit each record is measured as sent; one
    nested past the 254 levels orjson writes (in a field the mapping
    ignores) is measured by the slow writer: stored as it is when it comes
    alone in a small body (it was a 500, then refused)."""
    deep = b"[" * 300 + b"]" * 300
    big = b'{"body": {"stringValue": "' + b"x" * (1024 * 1024 + 10) + b'"}}'
    for records in (
        b'{"body": {"stringValue": "deep"}, "unread": ' + deep + b"}",
        big + b', {"body": {"stringValue": "deep"}, "unread": ' + deep + b"}",
    ):
        body = b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [' + records + b"]}]}]}"
        reply = client.request("POST", URL, body, headers(JSON))
        assert reply.status == 200
    partial = answer(reply, ExportLogsServiceResponse).partial_success
    assert partial.rejected_log_records == 1 and "record 0: the log record is 1048" in partial.error_message
    assert [e["body"] for e in events(sink)] == ["deep", "deep"]


def test_a_value_nested_where_a_number_belongs_is_named_by_its_kind(client, sink):
    """A refusal names an object or an array by its kind: its repr could be
    megabytes, or nest deeper than repr walks (990 levels: it was a 500)."""
    deep = b"[" * 990 + b"]" * 990
    records = b'{"timeUnixNano": ' + deep + b'}, {"body": {"doubleValue": {"a": 1}}}, {"severityNumber": "9"}'
    records += b', {"flags": true}, {"body": {"doubleValue": false}}'
    body = b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [' + records + b"]}]}]}"
    partial = answer(client.request("POST", URL, body, headers(JSON)), ExportLogsServiceResponse).partial_success
    assert partial.rejected_log_records == 4
    assert "record 0: timeUnixNano is an array, not an integer" in partial.error_message
    assert "record 1: body: doubleValue is an object, not a number" in partial.error_message
    assert "record 3: flags is true, not an integer" in partial.error_message  # as JSON writes them
    assert "record 4: body: doubleValue is false, not a number" in partial.error_message
    assert len(events(sink)) == 1


def test_the_warning_names_each_unread_field_once(client, sink):
    body = {"resourceLogs": [{"scope_logs": []}, {"scope_logs": []}, {"scope_logs": [], "resource_attrs": {}}]}
    partial = answer(client.request("POST", URL, orjson.dumps(body), headers(JSON)), ExportLogsServiceResponse)
    assert "it names 'scope_logs', 'resource_attrs', which" in partial.partial_success.error_message


def test_an_empty_json_request_has_no_warning(client, sink):
    for body in ({}, {"resourceLogs": []}, {"resourceLogs": [{"scopeLogs": [{"logRecords": []}]}]}):
        reply = client.request("POST", URL, orjson.dumps(body), headers(JSON))
        assert reply.status == 200
        assert not answer(reply, ExportLogsServiceResponse).HasField("partial_success")


# --- partial success ------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_partial_success_counts_refused_records_and_stores_the_others(adapter, sink, content_type):
    client = make_client(adapter, OTLPLogsAPI([TOKEN], max_record_bytes=2000), sink)
    records = [
        LogRecord(body=value("kept 0")),
        LogRecord(body=value("bad trace"), trace_id=b"short"),
        LogRecord(body=value("x" * 5000)),
        LogRecord(body=value("bad span"), span_id=b"\x01" * 7),
        LogRecord(body=value("kept 4")),
    ]
    reply = client.request("POST", URL, encode(one_request(*records), content_type), headers(content_type))
    assert reply.status == 200
    partial = answer(reply, ExportLogsServiceResponse).partial_success
    assert partial.rejected_log_records == 3
    assert "record 1: " in partial.error_message and "trace" in partial.error_message.lower()
    assert "record 2: the log record is" in partial.error_message and "over the limit of 2000" in partial.error_message
    assert "record 3: " in partial.error_message and "span" in partial.error_message.lower()
    assert [e["body"] for e in events(sink)] == ["kept 0", "kept 4"]


def test_json_records_of_the_wrong_shape_are_refused_one_by_one(client, sink):
    good = {"body": {"stringValue": "ok"}}
    bad = [
        {"severityNumber": "SEVERITY_NUMBER_INFO"},  # enum names are not OTLP JSON
        {"timeUnixNano": "soon"},
        {"attributes": {"not": "a list"}},
        {"body": {"boolValue": "yes"}},
        {"traceId": "zz" * 16},
        {"traceId": "00112233445566778899aabbccdd  ee"},  # 32 characters, 15 bytes
        {"spanId": "0011 2233 4455 6"},
        "not an object",
    ]
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [good, *bad, good]}]}]}
    reply = client.request("POST", URL, orjson.dumps(body), headers(JSON))
    assert reply.status == 200
    partial = answer(reply, ExportLogsServiceResponse).partial_success
    assert partial.rejected_log_records == len(bad)
    for index in range(1, len(bad) + 1):
        assert f"record {index}: " in partial.error_message
    assert [e["body"] for e in events(sink)] == ["ok", "ok"]


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_zero_and_empty_values_are_kept_as_sent(client, sink, content_type):
    sent = {"zero": 0, "empty": "", "false": False, "nothing": None, "double": 0.0, "bytes": b""}
    sent |= {"kvlist": dict(sent), "array": list(sent.values())}
    record = LogRecord(body=value(""), attributes=attrs(sent))
    reply = client.request("POST", URL, encode(one_request(record), content_type), headers(content_type))
    assert reply.status == 200
    (event,) = events(sink)
    stored = {"zero": 0, "empty": "", "false": False, "nothing": None, "double": 0.0, "bytes": ""}
    assert event["attributes"] == stored | {"kvlist": dict(stored), "array": list(stored.values())}
    assert event["body"] == ""  # a body set to the empty string is a body
    assert type(event["attributes"]["zero"]) is int and type(event["attributes"]["false"]) is bool


def test_a_refused_json_value_names_its_field(client, sink):
    """A value of the wrong shape is named by where it is: the body, or the
    attribute by its key (nested ones by their path)."""
    nested = {"kvlistValue": {"values": [{"key": "inner", "value": {"boolValue": "yes"}}]}}
    records = [
        {"body": "hello"},
        {"attributes": [{"key": "k", "value": "b"}]},
        {"attributes": [{"key": "outer", "value": nested}]},
        {"attributes": [{"key": "x" * 100, "value": {"intValue": "1e3"}}]},
    ]
    partial = partial_success_of(client, [{"scopeLogs": [{"logRecords": records}]}])
    assert partial.rejected_log_records == 4
    message = partial.error_message
    assert "record 0: body: an AnyValue is not an object" in message
    assert "record 1: attribute 'k': an AnyValue is not an object" in message
    assert "record 2: attribute 'outer' > 'inner': boolValue is not true or false" in message
    assert f"record 3: attribute '{'x' * 40}'... (100 characters): intValue is '1e3', not an integer" in message
    assert sink.batches == []


def test_the_path_of_a_deeply_nested_refused_attribute_is_cut_short(client, sink):
    """Ten records refused 200 kvlists deep under long keys: each reason names
    the outermost key and the two innermost, and the answer stays small."""

    def nested(depth: int):
        value = {"boolValue": "yes"}
        for level in range(depth):
            value = {"kvlistValue": {"values": [{"key": f"k{level}" + "x" * 200, "value": value}]}}
        return value

    records = [{"attributes": [{"key": "top", "value": nested(60)}]} for _ in range(10)]
    reply = client.request(
        "POST", URL, orjson.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}), headers(JSON)
    )
    assert reply.status == 200 and len(reply.body) < 8192
    partial = answer(reply, ExportLogsServiceResponse).partial_success
    assert partial.rejected_log_records == 10
    first = partial.error_message.split("; record 1: ")[0]
    assert first.startswith("10 log records rejected, 0 stored")
    assert first.endswith(
        f"record 0: attribute 'top' > ... (61 levels) > 'k1{'x' * 38}'... (202 characters)"
        f" > 'k0{'x' * 38}'... (202 characters): boolValue is not true or false"
    )


def test_json_attributes_of_every_shape_are_read_or_refuse_their_record(client, sink):
    kept = [
        ({"key": "s", "value": {"stringValue": "text"}}, {"s": "text"}),
        ({"key": "n", "value": {"intValue": "12"}}, {"n": 12}),
        ({"key": "m", "value": {"intValue": 13}}, {"m": 13}),
        ({"key": "two", "value": {"intValue": "1", "stringValue": "s"}}, {"two": "s"}),  # stringValue first
        ({"key": "none"}, {"none": None}),
        ({"value": {"stringValue": "no key"}}, {"": "no key"}),
        ({"key": "b", "value": {"boolValue": True}}, {"b": True}),
        # Bytes stored as a protobuf body's are: standard base64, padded.
        ({"key": "y", "value": {"bytesValue": "aGVsbG8="}}, {"y": "aGVsbG8="}),
        ({"key": "u", "value": {"bytesValue": "aGk-_w"}}, {"u": "aGk+/w=="}),  # URL-safe, unpadded
        ({"key": "w", "value": {"bytesValue": "aGVs\r\nbG8=\n"}}, {"w": "aGVsbG8="}),  # wrapped, as MIME writes it
        # A null member is unset, as protobuf's JSON parser reads it.
        ({"key": "z", "value": {"stringValue": None}}, {"z": None}),
        ({"key": "d", "value": {"doubleValue": None, "intValue": "4"}}, {"d": 4}),
        ({"key": "k", "value": {"kvlistValue": {"values": None}}}, {"k": {}}),
        ({"key": "a", "value": {"arrayValue": {"values": None}}}, {"a": []}),
    ]
    refused = [
        {"key": 5, "value": {"stringValue": "x"}},
        {"key": "s", "value": {"stringValue": 5}},
        {"key": "i", "value": {"intValue": "twelve"}},
        {"key": "l", "value": ["stringValue"]},
        {"key": "t", "value": "stringValue"},
        "stringValue",
        {"key": "y", "value": {"bytesValue": "not base64!!"}},
        {"key": "y", "value": {"bytesValue": 5}},
    ]
    records = [{"body": {"stringValue": "kept"}, "attributes": [kv]} for kv, _ in kept]
    records += [{"body": {"stringValue": "refused"}, "attributes": [kv]} for kv in refused]
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}
    reply = client.request("POST", URL, orjson.dumps(body), headers(JSON))
    assert reply.status == 200
    partial = answer(reply, ExportLogsServiceResponse).partial_success
    assert partial.rejected_log_records == len(refused)
    assert [e["attributes"] for e in events(sink)] == [attributes for _, attributes in kept]


def test_all_records_refused_is_still_a_200_with_nothing_stored(client, sink):
    reply = client.request("POST", URL, encode(one_request(LogRecord(trace_id=b"x")), PROTOBUF), headers())
    assert reply.status == 200
    assert answer(reply, ExportLogsServiceResponse).partial_success.rejected_log_records == 1
    assert sink.batches == []


# --- errors: google.rpc.Status in the request's encoding --------------------------------


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
@pytest.mark.parametrize("token", [None, "wrong", "Basic otlp-token"])
def test_401_for_a_refused_credential(client, sink, content_type, token):
    sent = headers(content_type, token=None)
    if token is not None:
        sent["Authorization"] = token if " " in token else f"Bearer {token}"
    reply = client.request("POST", URL, encode(one_request(full_record()), content_type), sent)
    assert reply.status == 401
    assert reply.headers["content-type"] == content_type
    status = answer(reply, Status)
    assert "Authorization: Bearer" in status.message
    assert sink.batches == []


def test_an_api_key_sent_to_otlp_is_named_in_the_401(client, sink):
    sent = {**headers(PROTOBUF, token=None), "x-api-key": "bl-key"}
    reply = client.request("POST", URL, encode(one_request(full_record()), PROTOBUF), sent)
    assert reply.status == 401
    assert answer(reply, Status).message.endswith(": this request sends x-api-key, which is not read here")


def call_asgi(app, headers, receive):
    """``app`` called as a server would, under PREFIX; the messages it sent."""
    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": PREFIX + "/v1/logs",
        "root_path": PREFIX,  # as a host's router mounts it
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 5000),
    }
    asyncio.run(app(scope, receive, send))
    return sent


def test_401_is_answered_before_the_body_is_read():
    received = []

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": b"\x00" * 10, "more_body": False}

    sent = call_asgi(ASGIApp(OTLPLogsAPI([TOKEN]), sink=MemorySink()), headers(token="nope"), receive)
    assert sent[0]["status"] == 401
    assert received == []  # the body was never asked for
    assert Status.FromString(sent[1]["body"]).message


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (b"\xff\xff\xff\xff", PROTOBUF, "not a protobuf ExportLogsServiceRequest"),
        (b"{not json", JSON, "not JSON"),
        (b"", JSON, "not JSON"),
        (b"[]", JSON, "must be a JSON object"),
        (b'{"resourceLogs": {}}', JSON, "resourceLogs must be an array"),
        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": 3}]}]}', JSON, "logRecords must be an array"),
    ],
)
def test_400_for_a_body_that_does_not_decode(client, sink, body, content_type, says):
    reply = client.request("POST", URL, body, headers(content_type))
    assert reply.status == 400
    assert says in answer(reply, Status).message
    assert sink.batches == []


def test_415_for_another_media_type_answered_in_protobuf(client):
    reply = client.request("POST", URL, b"hello", headers("text/plain"))
    assert reply.status == 415
    assert reply.headers["content-type"] == PROTOBUF
    assert "application/x-protobuf" in Status.FromString(reply.body).message


def test_415_for_an_unknown_content_encoding(client):
    reply = client.request("POST", URL, b"x", headers(**{"Content-Encoding": "snappy"}))
    assert reply.status == 415
    assert "snappy" in Status.FromString(reply.body).message


def test_405_for_another_method(client):
    reply = client.request("GET", URL, b"", headers())
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"
    assert Status.FromString(reply.body).code == 12  # UNIMPLEMENTED


def test_the_partial_success_stays_small_whatever_the_refused_values(client, sink):
    """The server bounds its answers (the specification recommends 4 MiB):
    a refusal quotes the start of a value, not a megabyte of it."""
    huge = "x" * 1_000_000
    bad = [{"severityNumber": huge}, {"body": {"doubleValue": huge}}] * 6
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "ok"}}, *bad]}]}]}
    reply = client.request("POST", URL, orjson.dumps(body), headers(JSON))
    assert reply.status == 200 and len(reply.body) < 4096
    partial = answer(reply, ExportLogsServiceResponse).partial_success
    assert partial.rejected_log_records == 12
    assert f"record 1: severityNumber is '{'x' * 40}'... (1000000 characters), not an integer" in partial.error_message
    assert f"record 2: body: doubleValue is '{'x' * 40}'... (1000000 characters), not a number" in partial.error_message
    assert "and 2 more" in partial.error_message
    assert [e["body"] for e in events(sink)] == ["ok"]


@pytest.mark.parametrize(("limit", "shown"), [(None, "20 MiB"), (64 * 1024 * 1024, "64 MiB")])
def test_the_body_limit_is_20_mib_unless_set(adapter, sink, limit, shown):
    """20 MiB by default (the specification's 64 MiB is a setting away): a
    body declared past the limit is refused before it is read, naming it."""
    api = OTLPLogsAPI([TOKEN]) if limit is None else OTLPLogsAPI([TOKEN], max_body_bytes=limit)
    client = make_client(adapter, api, sink)
    declared = headers(PROTOBUF, **{"Content-Length": str((limit or 20 * 1024 * 1024) + 1)})
    reply = client.request("POST", URL, b"", declared)
    assert reply.status == 413 and reply.headers["x-size-limit"] == shown
    assert f"over {shown}" in answer(reply, Status).message


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_413_for_a_body_over_the_limit(adapter, sink, content_type):
    client = make_client(adapter, OTLPLogsAPI([TOKEN], max_body_bytes=4096), sink)
    big = one_request(*[LogRecord(body=value("x" * 100)) for _ in range(100)])
    reply = client.request("POST", URL, encode(big, content_type), headers(content_type))
    assert reply.status == 413
    assert reply.headers["content-type"] == content_type
    assert "over 4 KiB (decompressed too)" in answer(reply, Status).message
    assert sink.batches == []


def test_413_for_a_body_over_the_limit_without_a_content_length_stops_reading():
    chunk = b"\x00" * 1024
    received = []

    async def receive():
        received.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": len(received) < 100}

    sink = MemorySink()
    app = ASGIApp(OTLPLogsAPI([TOKEN], max_body_bytes=10 * 1024), sink=sink)
    sent = call_asgi(app, headers(), receive)  # no Content-Length: the body is counted as it comes
    assert sent[0]["status"] == 413
    assert sum(received) <= 11 * 1024  # it stopped reading at the limit, not at the end of the body
    assert "over 10 KiB (decompressed too)" in Status.FromString(sent[1]["body"]).message
    assert sink.batches == []


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_413_for_a_compression_bomb(adapter, sink, encoding):
    client = make_client(adapter, OTLPLogsAPI([TOKEN], max_body_bytes=1024 * 1024), sink)
    inflated = b"\x00" * (64 * 1024 * 1024)
    bomb = gzip.compress(inflated) if encoding == "gzip" else zlib.compress(inflated)
    assert len(bomb) < 200_000
    reply = client.request("POST", URL, bomb, headers(**{"Content-Encoding": encoding}))
    assert reply.status == 413
    assert sink.batches == []


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_429_with_retry_after_then_the_exporter_may_come_back(adapter, redis_server, content_type):
    sink = MemorySink()
    # Counted in Redis: the ASGI test client runs each request in an event loop of its own.
    rate_limit = RateLimit(limit="1/minute", storage_uri=redis_server.url)
    client = make_client(adapter, OTLPLogsAPI([TOKEN], rate_limit=rate_limit), sink)
    body = encode(one_request(full_record()), content_type)
    assert client.request("POST", URL, body, headers(content_type)).status == 200
    refused = client.request("POST", URL, body, headers(content_type))
    assert refused.headers["content-type"] == content_type
    assert refused.status == 429
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert answer(refused, Status).code == 8  # RESOURCE_EXHAUSTED
    assert len(sink.batches) == 1


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_503_with_retry_after_while_a_fail_closed_limit_has_no_storage(adapter, redis_server, content_type):
    sink = MemorySink()
    rate_limit = RateLimit(limit="100/minute", storage_uri=redis_server.url, fail_open=False)
    client = make_client(adapter, OTLPLogsAPI([TOKEN], rate_limit=rate_limit), sink)
    body = encode(one_request(full_record()), content_type)
    assert client.request("POST", URL, body, headers(content_type)).status == 200
    redis_server.stop()
    refused = client.request("POST", URL, body, headers(content_type))
    assert refused.headers["content-type"] == content_type
    assert refused.status == 503
    assert int(refused.headers["retry-after"]) > 0
    assert answer(refused, Status).code == 14  # UNAVAILABLE
    assert len(sink.batches) == 1


def test_never_a_200_when_the_storage_hook_fails(adapter):
    client = make_client(adapter, OTLPLogsAPI([TOKEN]), FailingSink())
    reply = client.request("POST", URL, encode(one_request(full_record()), PROTOBUF), headers())
    assert reply.status == 500
    assert answer(reply, Status).message == "Internal Server Error"


# --- beside the other APIs, as ingest-mw serve mounts them ------------------------------


def test_beside_baselime_otlp_has_its_own_path_and_baselime_keeps_v1_logs(adapter, sink):
    apis = [
        BetterStackAPI([TOKEN], rate_limit=None),
        OTLPLogsAPI([TOKEN], path=PATH_BESIDE_BASELIME),
        BaselimeAPI(["key"]),
    ]
    client = make_client(adapter, apis, sink)
    otlp = client.request("POST", PREFIX + "/otlp/v1/logs", encode(one_request(full_record()), PROTOBUF), headers())
    assert otlp.status == 200
    baselime = client.request(
        "POST", PREFIX + "/v1/logs", b'[{"message": "m"}]', {"x-api-key": "key", "Content-Type": JSON}
    )
    assert baselime.status == 202
    assert [(b.api, b.dataset) for b in sink.batches] == [("otlp", None), ("baselime", "logs")]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"path": "v1/logs"}, "path must be a path below the mount"),
        ({"path": "/"}, "path must be a path below the mount"),
        ({"max_record_bytes": 0}, "max_record_bytes must be a positive number of bytes"),
        ({"max_body_bytes": 0}, "max_bytes must be positive"),
    ],
)
def test_options_are_checked_when_the_app_is_made(options, says):
    with pytest.raises(ValueError, match=says):
        OTLPLogsAPI([TOKEN], **options)


def test_the_package_imports_without_the_otlp_extra_and_says_what_to_install():
    import subprocess
    import sys

    script = """
import sys
sys.modules["opentelemetry"] = sys.modules["google.protobuf"] = sys.modules["google.rpc"] = None  # not installed
import ingest_mw, ingest_mw.contrib.config
from ingest_mw import BetterStackAPI, OTLPLogsAPI
BetterStackAPI(["t"])
try:
    OTLPLogsAPI(["t"])
except ImportError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'ingest-mw[otlp]'" in done.stdout


def _nested_body(levels: int) -> bytes:
    """A record whose body is ``levels`` kvlist values deep."""
    request = ExportLogsServiceRequest()
    value = request.resource_logs.add().scope_logs.add().log_records.add().body
    for _ in range(levels):
        value = value.kvlist_value.values.add().value
    value.string_value = "deep"
    return request.SerializeToString()


def test_a_protobuf_body_past_the_decoders_own_depth_says_so(client, sink):
    assert client.request("POST", URL, _nested_body(30), headers()).status == 200  # within both limits
    reply = client.request("POST", URL, _nested_body(40), headers())
    assert reply.status == 400
    message = Status.FromString(reply.body).message
    assert "nests deeper than the protobuf decoder takes (100 messages deep" in message
    assert "flatten the record" in message
    assert len(sink.events) == 1


def test_otlp_json_integers_the_protocol_cannot_carry_refuse_their_record(adapter, sink):
    # JSON numbers and strings can say more than an int64, a fixed64 or a fixed32
    # holds: such a record is refused by partial success, as protobuf could not send it.
    client = make_client(adapter, OTLPLogsAPI([TOKEN]), sink)

    def record(**fields):
        return {"body": {"stringValue": "r"}, **fields}

    def attribute(value):
        return record(attributes=[{"key": "n", "value": {"intValue": value}}])

    records = [
        record(timeUnixNano="1714564800000000000"),  # kept
        attribute("99999999999999999999999"),
        attribute(1e300),
        attribute(2**63),
        record(timeUnixNano="-1"),
        record(flags=2**70),
        record(flags=-1),
        record(severityNumber=2**40),
        attribute(-(2**63)),  # kept: the smallest int64
    ]
    body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}).encode()  # (orjson: 64 bits)
    reply = client.request("POST", URL, body, headers(JSON))
    assert reply.status == 200
    partial = answer(reply, ExportLogsServiceResponse).partial_success
    assert partial.rejected_log_records == 7
    assert "record 1: attribute 'n': intValue is a number of 23 digits, out of the range" in partial.error_message
    assert "record 4: timeUnixNano is -1, out of the range" in partial.error_message
    assert [e.get("attributes") for e in events(sink)] == [None, {"n": -(2**63)}]


def test_a_resource_or_scope_whose_attributes_cannot_be_read_refuses_its_records(adapter, sink):
    # Neither silently dropped attributes (service.name lost for every record)
    # nor a request refused whole: its records are refused by partial success, saying why.
    client = make_client(adapter, OTLPLogsAPI([TOKEN]), sink)
    big = {"key": "n", "value": {"intValue": str(2**63)}}
    service = {"key": "service.name", "value": {"stringValue": "svc"}}
    body = json.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {"attributes": [service, big]},
                    "scopeLogs": [{"logRecords": [{"body": {"stringValue": "a"}}]}],
                },
                {
                    "resource": {"attributes": [service]},
                    "scopeLogs": [
                        {"scope": {"name": "s", "attributes": [big]}, "logRecords": [{"body": {"stringValue": "b"}}]},
                        {"logRecords": [{"body": {"stringValue": "kept"}}]},
                    ],
                },
            ]
        }
    ).encode()
    reply = client.request("POST", URL, body, headers(JSON))
    assert reply.status == 200
    partial = answer(reply, ExportLogsServiceResponse).partial_success
    assert partial.rejected_log_records == 2
    assert (
        "record 0: the resource's attributes: attribute 'n': intValue is 9223372036854775808, out of the range"
        in partial.error_message
    )
    assert "record 1: the scope: attribute 'n': intValue is" in partial.error_message
    assert [(e["body"], e["resource"]) for e in events(sink)] == [("kept", {"service.name": "svc"})]


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_copies_of_a_resource_may_not_store_more_than_max_shared_bytes(adapter, sink, content_type):
    # Each record is stored with its own copy of its resource and scope: 20,000
    # tiny records under a resource of 1,000 attributes are a 162 KB body that
    # would store 400 MB. The copies may add at most max_shared_bytes.
    client = make_client(adapter, OTLPLogsAPI([TOKEN], max_shared_bytes=100_000), sink)

    def request_of(records: int) -> bytes:
        request = ExportLogsServiceRequest()
        resource_logs = request.resource_logs.add()
        for i in range(50):
            attribute = resource_logs.resource.attributes.add()
            attribute.key, attribute.value.string_value = f"attribute.{i}", "v" * 10
        scope_logs = resource_logs.scope_logs.add()
        for _ in range(records):
            scope_logs.log_records.add().body.string_value = "x"
        return encode(request, content_type)

    assert client.request("POST", URL, request_of(50), headers(content_type)).status == 200  # 50 copies of 1.4 KB
    reply = client.request("POST", URL, request_of(200), headers(content_type))
    assert reply.status == 413
    message = answer(reply, Status).message
    assert "would store more than 100000 bytes of resource and scope attributes, a copy with each record" in message
    assert len(sink.events) == 50


def test_a_null_is_a_field_not_set_and_a_wrong_scope_refuses_its_records(adapter, sink):
    # The proto3 JSON mapping reads null as "not set" (protobuf's own parser does):
    # a null resource, attributes or scope is none; a scope of the wrong shape is
    # refused as a resource's would be, never dropped silently.
    client = make_client(adapter, OTLPLogsAPI([TOKEN]), sink)
    record = {"body": {"stringValue": "r"}}

    def resource_logs(**fields):
        return {"scopeLogs": [{"logRecords": [record]}], **fields}

    partial = partial_success_of(
        client,
        [
            resource_logs(resource=None),
            resource_logs(resource={"attributes": None}),
            {"scopeLogs": [{"scope": None, "logRecords": [record]}]},
            {"scopeLogs": [{"scope": {"attributes": None, "name": None}, "logRecords": [record]}]},
            {"scopeLogs": [{"scope": 5, "logRecords": [record]}]},
            {"scopeLogs": [{"scope": {"name": 5}, "logRecords": [record]}]},
        ],
    )
    assert partial.rejected_log_records == 2
    assert "record 4: the scope: scope is not an object" in partial.error_message
    assert "record 5: the scope: scope.name is not a string" in partial.error_message
    assert len(events(sink)) == 4


def test_otlp_json_numbers_as_strings_are_read_as_json_writes_them(adapter, sink):
    # int() and float() take more than JSON writes (" 12", "1_000", other scripts'
    # digits, "nan", "inf"); a bare number past 2**53 was rounded by the time it is
    # read (-9223372036854775809 reads as -2**63): each refuses its record.
    client = make_client(adapter, OTLPLogsAPI([TOKEN]), sink)

    def record(value):
        return {"attributes": [{"key": "v", "value": value}]}

    sent = [
        ({"intValue": "12"}, 12),
        ({"intValue": "-12"}, -12),
        ({"doubleValue": "1.5e3"}, 1500.0),
        ({"doubleValue": "NaN"}, "nan"),
        ({"intValue": " 12"}, "refused"),
        ({"intValue": "1_000"}, "refused"),
        ({"intValue": "１２"}, "refused"),
        ({"intValue": "1e3"}, "refused"),
        ({"doubleValue": "nan"}, "refused"),
        ({"doubleValue": " 1.5"}, "refused"),
    ]
    records = [record(value) for value, _ in sent]
    body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}).encode()
    rounded = body.replace(b'"v", "value": {"intValue": "12"}', b'"v", "value": {"intValue": -9223372036854775809}', 1)
    assert b"-9223372036854775809" in rounded
    for payload in (body, rounded):
        assert client.request("POST", URL, payload, headers(JSON)).status == 200
    stored = [str(e["attributes"]["v"]) for e in events(sink)]
    kept = [str(expected) for _, expected in sent if expected != "refused"]
    assert stored == kept + kept[1:]  # the second time, the rounded number refused its record


def test_refused_records_spend_no_copies_and_a_huge_number_is_out_of_range(adapter, sink):
    # 200 records refused for their trace id hold no copy of their resource; a
    # number of 5,000 digits (int() refuses past 4,300) is out of range, not a 500.
    client = make_client(adapter, OTLPLogsAPI([TOKEN], max_shared_bytes=10_000), sink)
    resource = {"attributes": [{"key": f"k{i}", "value": {"stringValue": "v" * 20}} for i in range(20)]}
    records = [{"body": {"stringValue": "r"}, "traceId": "00"} for _ in range(200)]
    records += [{"timeUnixNano": "1" * 5000, "body": {"stringValue": "h"}}, {"body": {"stringValue": "ok"}}]
    body = json.dumps({"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": records}]}]}).encode()
    reply = client.request("POST", URL, body, headers(JSON))
    assert reply.status == 200
    partial = answer(reply, ExportLogsServiceResponse).partial_success
    assert partial.rejected_log_records == 201
    assert [e["body"] for e in events(sink)] == ["ok"]
    from ingest_mw.otlplogs import OTLPJSONCodec  # the reason itself, past the rejections listed

    one = OTLPJSONCodec(max_record_bytes=1 << 20).decode(
        json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [records[200]]}]}]}).encode()
    )
    assert one.invalid[0].reason == "timeUnixNano is a number of 5000 digits, out of the range of its protobuf type"
    from ingest_mw.otlplogs import _json_int

    assert _json_int("0" * 30, "intValue") == 0 and _json_int("-" + "0" * 25 + "5", "intValue") == -5  # leading zeros


def test_the_protobuf_decoder_bounds_how_deep_an_event_nests():
    # What lets the depth cap skip protobuf events: none nests deeper than
    # PROTOBUF_NESTS_AT_MOST, the decoder's own guard refusing deeper bodies.
    from ingest_mw.errors import IngestError
    from ingest_mw.otlplogs import PROTOBUF_NESTS_AT_MOST, OTLPProtobufCodec

    def depth(value):
        if type(value) is dict:
            return 1 + max(map(depth, value.values()), default=0)
        if type(value) is list:
            return 1 + max(map(depth, value), default=0)
        return 0

    codec = OTLPProtobufCodec(max_record_bytes=1 << 20)
    deepest = 0
    for where in ("resource", "attribute", "body"):
        for levels in range(40, 60):
            request = ExportLogsServiceRequest()
            resource_logs = request.resource_logs.add()
            record = resource_logs.scope_logs.add().log_records.add()
            if where == "body":
                any_value = record.body
            else:
                attributes = resource_logs.resource.attributes if where == "resource" else record.attributes
                attribute = attributes.add()
                attribute.key, any_value = "k", attribute.value
            for _ in range(levels):
                any_value = any_value.array_value.values.add()
            any_value.string_value = "x"
            try:
                decoded = codec.decode(request.SerializeToString())
            except IngestError:
                continue
            deepest = max(deepest, *map(depth, decoded.events))
            assert decoded.nests_at_most == PROTOBUF_NESTS_AT_MOST
    assert deepest == PROTOBUF_NESTS_AT_MOST
