"""The Baselime Events API contract, through both adapters under a mount prefix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from clients import PREFIX, make_client
from sinks_for_tests import FailingSink

from ingest_mw import BaselimeAPI, BetterStackAPI, OTLPLogsAPI
from ingest_mw.baselime import MAX_EVENT_BYTES

KEY = "bl-key"
HEADERS = {"x-api-key": KEY, "Content-Type": "application/json"}
URL = PREFIX + "/v1/logs"


@pytest.fixture
def client(adapter, sink):
    return make_client(adapter, BaselimeAPI({"team": KEY}), sink)


def post(client, body, headers=HEADERS, path=URL):
    reply = client.request("POST", path, body, headers)
    assert reply.headers["content-type"] == "application/json"  # every response is JSON
    return reply.status, orjson.loads(reply.body)


# The spec's curl example, made valid JSON.
SPEC_EVENTS = [
    {
        "message": "This is an example log event",
        "error": "TypeError: Cannot read property 'something' of undefined",
        "requestId": "6092d6f0-3bfa-4d62-9d0b-5bc7ae6518a1",
        "namespace": "https://api.domain.com/resource/{id}",
    },
    {
        "message": "This is another example log event",
        "requestId": "6092d6f0-3bfa-4d62-9d0b-5bc7ae6518a1",
        "data": {"userId": "01HBRCB38K2K4V5SDR7YC1D0ZB"},
        "duration": 127,
    },
]


def test_202_request_accepted_with_dataset_service_namespace(client, sink):
    headers = {**HEADERS, "x-service": "my-service", "x-namespace": "ns"}
    assert post(client, orjson.dumps(SPEC_EVENTS), headers) == (202, {"message": "Request Accepted"})
    batch = sink.batches[0]
    assert (batch.api, batch.source, batch.dataset, batch.service, batch.namespace) == (
        "baselime",
        "team",
        "logs",
        "my-service",
        "ns",
    )
    assert [e.data for e in batch.events] == SPEC_EVENTS


def test_service_and_namespace_are_optional(client, sink):
    assert post(client, b"[{}]")[0] == 202
    assert (sink.batches[0].service, sink.batches[0].namespace) == (None, None)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_405_method_not_allowed(client, method):
    reply = client.request(method, URL, b"", HEADERS)
    assert (reply.status, orjson.loads(reply.body)) == (405, {"message": "Method Not Allowed"})


@pytest.mark.parametrize("headers", [{"Content-Type": "application/json"}, {**HEADERS, "x-api-key": "wrong"}])
def test_401_unauthorised(client, sink, headers):
    status, body = post(client, b"[{}]", headers)
    assert (status, body["message"]) == (401, "Unauthorised")
    assert sink.batches == []


def test_a_bearer_token_sent_to_baselime_is_named_in_the_401(client, sink):
    # An OTLP exporter pointed at the server's root posts to /v1/logs, Baselime's
    # dataset "logs", with its Bearer token: the 401 says why it is not read.
    status, body = post(client, b"[{}]", {"Authorization": "Bearer tok", "Content-Type": "application/json"})
    assert (status, body) == (
        401,
        {
            "message": "Unauthorised",
            "detail": "missing or invalid x-api-key header: this request sends Authorization, which is not read here",
        },
    )
    status, body = post(client, b"[{}]", {"x-api-key": "wrong", "Authorization": "Bearer tok"})
    assert body["detail"] == "missing or invalid x-api-key header"  # a key was sent: no note


@pytest.mark.parametrize(
    "path", ["/v1", "/v1/", "/v1/has space", "/v1/a/b", "/v1/-dash", "/v1/" + "d" * 129, "/v2/logs", "/V0/x", "/v10"]
)
def test_400_for_a_malformed_v1_path(client, path):
    status, body = post(client, b"[{}]", path=PREFIX + path)
    assert (status, body["message"]) == (400, "Bad Request")
    assert "/v1/<dataset>" in body["detail"]


@pytest.mark.parametrize("path", ["/", "", "/logs", "/version2/logs"])
def test_alone_under_its_mount_every_path_without_v1_is_its_400(client, sink, path):
    """As on the contract's own host, where every path is the Events API's:
    "400 - Missing or invalid path parameters (v1 or <dataset>)"."""
    status, body = post(client, b"[{}]", path=PREFIX + path)
    detail = "no /v1/<dataset> in the path: send to /v1/<dataset>, the dataset to store in"
    assert (status, body) == (400, {"message": "Bad Request", "detail": detail})
    assert sink.batches == []


@pytest.mark.parametrize("path", ["", "/logs", "/version2/logs"])
def test_beside_another_api_a_path_no_api_claims_is_a_404_naming_the_routes(adapter, sink, path):
    client = make_client(adapter, [BaselimeAPI({"team": KEY}), OTLPLogsAPI(["tok"], path="/otlp/v1/logs")], sink)
    reply = client.request("POST", PREFIX + path, b"[{}]", HEADERS)
    assert (reply.status, reply.headers["content-type"]) == (404, "text/plain; charset=utf-8")
    where = PREFIX + (path or "/")
    assert reply.body.decode() == (
        f"Not Found: no ingest API at {where}; the routes here are POST {PREFIX}/v1/<dataset> (Baselime),"
        f" POST {PREFIX}/otlp/v1/logs (OTLP logs)"
    )


@pytest.mark.parametrize("dataset", ["logs", "my-app.prod_1", "D" * 128])
def test_allowed_dataset_names(client, sink, dataset):
    assert post(client, b"[{}]", path=f"{PREFIX}/v1/{dataset}")[0] == 202
    assert sink.batches[0].dataset == dataset


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b'{"message": "an object, not an array"}', "must be a JSON array"),
        (b'"text"', "must be a JSON array"),
        (b'[{"a":1}', "never closed"),
        (b'[{"a":1} garbage {"b":2}]', "unexpected data after element 0"),
        (b'[{"a":1}, {"b":2}] trailing', "after the closing bracket"),
        (b'[{"a":1},, {"b":2}]', "element 1 is missing"),
        (b'[{"a": "unterminated}]', "never closed"),
        (b"nonsense", "the request body is not valid JSON: send a JSON array of event objects"),
        (b'{"a":', "the request body is not valid JSON"),
    ],
)
def test_400_bodies_store_nothing(client, sink, body, detail):
    status, reply = post(client, body)
    assert (status, reply["message"]) == (400, "Bad Request")
    assert detail in reply["detail"]
    assert sink.batches == []


def test_non_json_content_type_is_415(client):
    status, body = post(client, b"[{}]", {**HEADERS, "Content-Type": "application/x-ndjson"})
    assert (status, body["message"]) == (415, "Unsupported Media Type")


# --- partial acceptance ------------------------------------------------------------
def event_of_size(size: int) -> bytes:
    event = b'{"m":"' + b"x" * (size - 8) + b'"}'
    assert len(event) == size
    return event


@pytest.mark.parametrize("separator", [b",", b" ,\n  "])
def test_partial_acceptance_lists_each_invalid_event(client, sink, separator):
    elements = [
        b'{"ok":0,"text":"brackets ] } [ { and \\"quotes\\", commas"}',
        b"42",
        b'{"bad": }',
        b'"a string"',
        event_of_size(MAX_EVENT_BYTES),
        event_of_size(MAX_EVENT_BYTES + 1),
        b"[1, 2]",
        b"nul",
        b'{"ok":1}',
    ]
    status, body = post(client, b"[" + separator.join(elements) + b"]")
    assert status == 400
    assert body == {
        "message": "Bad Request",
        "detail": "6 of 9 events refused (listed in invalid, by index); the others were stored:"
        " resend only the refused ones, fixed",
        "invalid": [
            {"index": 1, "reason": "not a JSON object"},
            {"index": 2, "reason": "not valid JSON"},
            {"index": 3, "reason": "not a JSON object"},
            {"index": 5, "reason": "larger than 256 KiB of JSON"},
            {"index": 6, "reason": "not a JSON object"},
            {"index": 7, "reason": "not valid JSON"},
        ],
    }
    stored = [e.data for e in sink.events]
    assert stored[0] == {"ok": 0, "text": 'brackets ] } [ { and "quotes", commas'}
    assert len(stored[1]["m"]) == MAX_EVENT_BYTES - 8
    assert stored[2] == {"ok": 1}


def test_size_limit_when_the_body_parses(client, sink):
    body = b"[" + event_of_size(MAX_EVENT_BYTES) + b",\n" + event_of_size(MAX_EVENT_BYTES + 1) + b"]"
    status, reply = post(client, body)
    assert (status, reply["invalid"]) == (400, [{"index": 1, "reason": "larger than 256 KiB of JSON"}])
    assert len(sink.events) == 1


def test_only_non_objects_in_a_small_body(client, sink):
    status, reply = post(client, b'[{"a":1}, null, true]')
    assert status == 400
    assert [i["index"] for i in reply["invalid"]] == [1, 2]
    assert [e.data for e in sink.events] == [{"a": 1}]


def test_all_invalid_stores_nothing(client, sink):
    status, reply = post(client, b"[1, 2]")
    assert status == 400 and len(reply["invalid"]) == 2
    assert sink.batches == []


def test_limits_are_configurable(adapter, sink):
    client = make_client(adapter, BaselimeAPI([KEY], max_body_bytes=100, max_event_bytes=10), sink)
    status, reply = post(client, b'[{"a":1}, {"abcdef":123}]')
    assert (status, reply["invalid"]) == (400, [{"index": 1, "reason": "larger than 10 bytes of JSON"}])
    status, reply = post(client, b"[" + b" " * 100 + b"]")
    assert (status, reply["message"]) == (413, "Payload Too Large")


def test_default_body_limit_is_6_mib(client, sink):
    status, body = post(client, b"[" + b" " * (6 * 1024 * 1024) + b"]")
    assert (status, body["message"]) == (413, "Payload Too Large")


def test_500_internal_error_when_the_hook_fails(adapter):
    client = make_client(adapter, BaselimeAPI([KEY]), FailingSink())
    assert post(client, b"[{}]") == (500, {"message": "Internal Error"})


def test_500_even_with_invalid_events_present(adapter):
    client = make_client(adapter, BaselimeAPI([KEY]), FailingSink())
    assert post(client, b"[{}, 1]") == (500, {"message": "Internal Error"})


# --- event time ------------------------------------------------------------------------
def test_timestamp_or_dt_field_sets_the_event_time(client, sink):
    t1 = datetime(2020, 1, 1, tzinfo=UTC)
    t2 = datetime.now(UTC) - timedelta(hours=3)
    body = orjson.dumps([{"timestamp": int(t1.timestamp() * 1000)}, {"dt": t2.isoformat()}, {"timestamp": "?"}, {}])
    assert post(client, body)[0] == 202
    received = sink.batches[0].received_at
    assert [e.time for e in sink.events] == [t1, t2, received, received]


# --- beside Better Stack, as in `ingest-mw serve` ----------------------------------
def test_both_apis_under_one_mount(adapter, sink):
    client = make_client(adapter, [BetterStackAPI(["bs"]), BaselimeAPI([KEY])], sink)
    assert (
        client.request(
            "POST", PREFIX + "/", b"{}", {"Authorization": "Bearer bs", "Content-Type": "application/json"}
        ).status
        == 202
    )
    assert post(client, b"[{}]")[0] == 202
    reply = client.request("POST", PREFIX + "/logs", b"[{}]", {"Authorization": "Bearer bs"})
    assert (reply.status, reply.body.decode()) == (
        404,
        f"Not Found: no ingest API at {PREFIX}/logs; the routes here are"
        f" POST {PREFIX}/ (Better Stack), POST {PREFIX}/v1/<dataset> (Baselime)",
    )
    assert [b.api for b in sink.batches] == ["betterstack", "baselime"]


def test_the_invalid_list_is_capped_and_counted(client, sink):
    from ingest_mw.baselime import MAX_INVALID_LISTED

    body = b"[" + b",".join([b"1"] * (MAX_INVALID_LISTED + 500) + [b"{}"]) + b"]"
    status, reply = post(client, body)
    assert status == 400
    assert len(reply["invalid"]) == MAX_INVALID_LISTED
    assert reply["invalid"][-1]["index"] == MAX_INVALID_LISTED - 1
    assert reply["invalid_count"] == MAX_INVALID_LISTED + 500
    assert len(sink.events) == 1
