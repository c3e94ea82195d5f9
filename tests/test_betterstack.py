"""The Better Stack contract, end to end through both adapters under a mount prefix."""

from __future__ import annotations

import gzip
import logging
import zlib
from datetime import UTC, datetime, timedelta, timezone

import brotli
import msgpack
import orjson
import pytest
from backports import zstd
from clients import HOST_BODY, PREFIX, make_client
from sinks_for_tests import FailingSink

from ingest_mw import BetterStackAPI, MemorySink

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}
UTC = UTC


@pytest.fixture
def client(adapter, sink):
    return make_client(adapter, BetterStackAPI({"web": TOKEN}), sink)


def post(client, body, headers=JSON, path=PREFIX + "/"):
    return client.request("POST", path, body, headers)


def now_iso(delta=timedelta(0)):
    return (datetime.now(UTC) + delta).isoformat()


# --- the contract's bodies -------------------------------------------------------
SINGLE = {"message": "logs is ready", "nested": {"values": 123}}
MULTIPLE = [{"message": "A"}, {"message": "B"}]

BODIES = [
    ("application/json", orjson.dumps(SINGLE), [SINGLE]),
    ("application/json", orjson.dumps(MULTIPLE), MULTIPLE),
    ("application/json; charset=utf-8", orjson.dumps(MULTIPLE), MULTIPLE),
    ("application/x-ndjson", orjson.dumps(SINGLE), [SINGLE]),
    ("application/x-ndjson", b'{"message":"A"}\n{"message":"B"}', MULTIPLE),
    ("application/ndjson", b'{"message":"A"}\r\n\r\n{"message":"B"}\n', MULTIPLE),
    ("application/jsonl", b'\n{"message":"A"}\n  \n{"message":"B"}\n', MULTIPLE),
    ("application/msgpack", msgpack.packb(SINGLE), [SINGLE]),
    ("application/msgpack", msgpack.packb(MULTIPLE), MULTIPLE),
    ("application/x-msgpack", msgpack.packb(MULTIPLE), MULTIPLE),
]


@pytest.mark.parametrize(("content_type", "body", "expected"), BODIES)
def test_accepts_every_content_type_single_and_multiple(client, sink, content_type, body, expected):
    reply = post(client, body, {**AUTH, "Content-Type": content_type})
    assert (reply.status, reply.body) == (202, b"")
    assert [e.data for e in sink.events] == expected
    batch = sink.batches[0]
    assert (batch.api, batch.source, batch.client) == ("betterstack", "web", "127.0.0.1")


def test_mount_root_without_trailing_slash(client, sink):
    assert post(client, b"{}", path=PREFIX).status == 202


def test_other_paths_pass_to_the_host_or_404_under_the_mount(client):
    assert client.request("GET", "/elsewhere").body == HOST_BODY
    assert client.request("POST", "/ingestion", b"{}", JSON).body == HOST_BODY
    assert post(client, b"{}", path=PREFIX + "/v1/logs").status == 404


def test_an_empty_array_is_accepted_and_stores_nothing(client, sink):
    assert post(client, b"[]").status == 202
    assert sink.batches == []


# --- timestamps ----------------------------------------------------------------
def test_dt_forms_set_the_event_time(adapter, sink):
    client = make_client(adapter, BetterStackAPI([TOKEN]), sink)
    recent = datetime.now(UTC).replace(microsecond=123456) - timedelta(minutes=5)
    seconds = int(recent.timestamp())
    events = [
        {"dt": seconds},
        {"dt": seconds * 1000 + 123},
        {"dt": seconds * 1_000_000 + 123456},
        {"dt": seconds * 1_000_000_000 + 123456789},
        {"dt": seconds + 0.5},
        {"dt": recent.strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
        {"dt": recent.astimezone(timezone(timedelta(hours=2))).strftime("%Y-%m-%d %H:%M:%S.%f%z")},
    ]
    assert post(client, orjson.dumps(events)).status == 202
    whole = recent.replace(microsecond=0)
    expected = [
        whole,
        whole.replace(microsecond=123000),
        whole.replace(microsecond=123456),
        whole.replace(microsecond=123456),
        whole.replace(microsecond=500000),
        recent,
        recent,
    ]
    assert [e.time for e in sink.events] == expected
    assert [e.data for e in sink.events] == events  # original values kept


def test_msgpack_timestamp_extension(client, sink):
    when = datetime.now(UTC).replace(microsecond=250000) - timedelta(minutes=1)
    body = msgpack.packb({"message": "m", "dt": when}, datetime=True)
    assert post(client, body, {**AUTH, "Content-Type": "application/msgpack"}).status == 202
    assert sink.events[0].time == when


def test_missing_unparsable_and_too_old_dt_use_reception_time(client, sink):
    old = now_iso(-timedelta(minutes=16))
    fresh = now_iso(-timedelta(minutes=14))
    before = datetime.now(UTC)
    body = orjson.dumps([{"m": 1}, {"m": 2, "dt": "not a time"}, {"m": 3, "dt": old}, {"m": 4, "dt": fresh}])
    assert post(client, body).status == 202
    after = datetime.now(UTC)
    received = sink.batches[0].received_at
    assert before <= received <= after
    times = [e.time for e in sink.events]
    assert times[:3] == [received] * 3
    assert times[3] == datetime.fromisoformat(fresh)
    assert sink.events[1].data["dt"] == "not a time"
    assert sink.events[2].data["dt"] == old


def test_max_past_is_configurable(adapter, sink):
    client = make_client(adapter, BetterStackAPI([TOKEN], max_past=None), sink)
    old = "2023-08-09 07:03:30+00:00"  # the contract's example
    assert post(client, orjson.dumps({"message": "I have arrived on time", "dt": old})).status == 202
    assert sink.events[0].time == datetime(2023, 8, 9, 7, 3, 30, tzinfo=UTC)


# --- refusals ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "application/json", "Authorization": "Bearer wrong"},
        {"Content-Type": "application/json", "Authorization": TOKEN},
        {"Content-Type": "application/json", "Authorization": f"Basic {TOKEN}"},
        {"Content-Type": "application/json", "Authorization": "Bearer "},
    ],
)
def test_missing_or_wrong_token_is_403_unauthorized(client, sink, headers):
    reply = post(client, b'{"m":1}', headers)
    assert (reply.status, reply.body) == (403, b"Unauthorized")
    assert sink.batches == []


def test_bearer_scheme_is_case_insensitive(client):
    assert post(client, b"{}", {"Content-Type": "application/json", "Authorization": f"bearer {TOKEN}"}).status == 202


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(client, method):
    reply = client.request(method, PREFIX + "/", b"", AUTH)
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("content_type", "body", "status", "text"),
    [
        ("application/json", b'{"message": ', 406, b"Couldn't parse JSON content."),
        ("application/json", b"\xff\xfe", 406, b"Couldn't parse JSON content."),
        ("application/x-ndjson", b'{"a":1}\n{"b":', 406, b"Couldn't parse JSON content."),
        ("application/msgpack", b"\xc1", 406, b"Couldn't parse MessagePack content."),
        ("application/msgpack", msgpack.packb({"a": 1}) + b"\x01", 406, b"Couldn't parse MessagePack content."),
        ("application/json", b"", 400, b"empty"),
        ("application/json", b"  \n", 400, b"empty"),
        ("application/msgpack", b"", 400, b"empty"),
        ("application/json", b"42", 400, b"got a number"),
        ("application/json", b'"hello"', 400, b"got a string"),
        ("application/json", b'[{"a":1}, 2]', 400, b"event 1 is a number"),
        ("application/json", b"[[{}]]", 400, b"event 0 is an array"),
        ("application/x-ndjson", b'{"a":1}\n[1]', 400, b"line 2 holds an array"),
        ("application/msgpack", msgpack.packb([{"a": 1}, "x"]), 400, b"event 1 is a string"),
        ("text/plain", b"{}", 415, b"application/json, application/x-ndjson"),
        ("application/x-www-form-urlencoded", b"{}", 415, b"application/msgpack"),
    ],
)
def test_bad_bodies_are_refused_with_a_clear_message(client, sink, content_type, body, status, text):
    reply = post(client, body, {**AUTH, "Content-Type": content_type})
    assert reply.status == status
    assert text in reply.body
    assert reply.headers["content-type"].startswith("text/plain")
    assert sink.batches == []


def test_missing_content_type_is_415(client):
    reply = post(client, b"{}", AUTH)
    assert reply.status == 415
    assert b"no Content-Type" in reply.body


# --- content encodings ----------------------------------------------------------
def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


ENCODED = [
    ("gzip", gzip.compress),
    ("x-gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", _raw_deflate),
    ("zstd", zstd.compress),
    ("br", brotli.compress),
    ("identity", lambda b: b),
    ("gzip, br", lambda b: brotli.compress(gzip.compress(b))),
]


@pytest.mark.parametrize(("encoding", "encode"), ENCODED)
@pytest.mark.parametrize("content_type", ["application/json", "application/msgpack"])
def test_every_content_encoding(client, sink, encoding, encode, content_type):
    body = orjson.dumps(MULTIPLE) if content_type == "application/json" else msgpack.packb(MULTIPLE)
    headers = {**AUTH, "Content-Type": content_type, "Content-Encoding": encoding}
    assert post(client, encode(body), headers).status == 202
    assert [e.data for e in sink.events] == MULTIPLE


def test_unknown_content_encoding_is_415(client):
    reply = post(client, b"{}", {**JSON, "Content-Encoding": "compress"})
    assert reply.status == 415
    assert b"gzip" in reply.body


# --- size limits -------------------------------------------------------------------
def test_default_limit_is_20_mib(client, sink):
    event = b'{"m":"' + b"x" * (20 * 1024 * 1024 - 8) + b'"}'
    assert len(event) == 20 * 1024 * 1024
    assert post(client, event).status == 202
    reply = post(client, event + b" ")
    assert (reply.status, reply.body) == (413, b"payload reached size limit")


def test_decompression_bomb_is_413(adapter, sink):
    client = make_client(adapter, BetterStackAPI([TOKEN], max_body_bytes=1024 * 1024), sink)
    inner = b'{"m":"' + b"a" * (8 * 1024 * 1024) + b'"}'
    bomb = gzip.compress(inner)
    assert len(bomb) < 64 * 1024
    reply = post(client, bomb, {**JSON, "Content-Encoding": "gzip"})
    assert (reply.status, reply.body) == (413, b"payload reached size limit")
    assert sink.batches == []


# --- storage hooks ---------------------------------------------------------------
def test_a_failing_hook_is_500_and_nothing_is_acknowledged(adapter, caplog):
    failing = FailingSink()
    client = make_client(adapter, BetterStackAPI({"web": TOKEN}), failing)
    with caplog.at_level(logging.ERROR, logger="ingest_mw"):
        reply = post(client, orjson.dumps(MULTIPLE))
    assert reply.status == 500
    assert failing.calls == 1
    assert any(
        "storage hook failed" in r.getMessage() and "2 betterstack events" in r.getMessage() for r in caplog.records
    )
    assert TOKEN not in caplog.text
    assert TOKEN.encode() not in reply.body


def test_the_token_never_appears_in_error_bodies(client):
    for headers in (JSON, {**AUTH, "Content-Type": "text/plain"}, {"Authorization": "Bearer " + TOKEN + "x"}):
        reply = post(client, b"nope", headers)
        assert TOKEN.encode() not in reply.body


def test_several_tokens_map_to_their_source(adapter):
    sink = MemorySink()
    client = make_client(adapter, BetterStackAPI({"web": "t1", "worker": "t2"}), sink)
    for token in ("t1", "t2"):
        post(client, b"{}", {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert [b.source for b in sink.batches] == ["web", "worker"]


def test_what_orjson_cannot_write_is_still_stored(adapter, sink):
    """Deep nesting (orjson reads 1024 levels but writes 254) and MessagePack
    binary keys reach every sink, the SQLite-backed one included."""
    client = make_client(adapter, BetterStackAPI([TOKEN], max_depth=1000), sink)  # past the default cap
    deep = b'{"a":' * 600 + b"1" + b"}" * 600
    assert post(client, deep).status == 202
    binary_keys = msgpack.packb({b"raw": 1, "text": b"\xff"}, use_bin_type=True)
    assert post(client, binary_keys, {**AUTH, "Content-Type": "application/msgpack"}).status == 202
    assert sink.events[1].data == {b"raw": 1, "text": b"\xff"}


@pytest.mark.parametrize("tokens", ["s3cret-token", [], {"web": ""}, [""], 42])
def test_malformed_tokens_are_refused_at_construction(tokens):
    """A lone string is not read as one token per character."""
    with pytest.raises(ValueError) as info:
        BetterStackAPI(tokens)
    assert "s3cret" not in str(info.value)


def test_ndjson_errors_name_the_real_line(client):
    reply = post(client, b'{"a":1}\n\n\n[1]\n', {**AUTH, "Content-Type": "application/x-ndjson"})
    assert (reply.status, reply.body[:25]) == (400, b"line 4 holds an array: ev")
