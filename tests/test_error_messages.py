"""Every refusal says what to fix, in the API's own style, through both adapters under a mount."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import orjson
import pytest
from clients import PREFIX, make_client

from ingest_mw import BaselimeAPI, BetterStackAPI, MemorySink

TOKEN = "tok"
KEY = "key"
BS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
BL = {"x-api-key": KEY, "Content-Type": "application/json"}


@pytest.fixture
def client(adapter):
    return make_client(adapter, [BetterStackAPI([TOKEN], rate_limit=None), BaselimeAPI([KEY])], MemorySink())


def baselime(client, body, headers=BL, path=PREFIX + "/v1/logs"):
    reply = client.request("POST", path, body, headers)
    return reply.status, orjson.loads(reply.body)


@pytest.mark.parametrize("body", [b"", b"  \n"])
def test_baselime_empty_body_says_what_baselime_accepts(client, body):
    assert baselime(client, body) == (
        400,
        {"message": "Bad Request", "detail": "request body is empty: send a JSON array of event objects, [{...}, ...]"},
    )


def test_baselime_single_object_says_to_wrap_it(client):
    assert baselime(client, b'{"message": "alone"}') == (
        400,
        {
            "message": "Bad Request",
            "detail": "the request body must be a JSON array of event objects, a single event too: [{...}]",
        },
    )


def test_baselime_says_when_no_event_was_stored(client):
    """A partly invalid batch says the others were stored; an all-invalid one must not."""
    status, reply = baselime(client, b'[5, "x"]')
    assert status == 400
    assert reply["detail"] == "2 of 2 events refused (listed in invalid, by index); none was stored"
    status, reply = baselime(client, b'[5, {"message": "kept"}]')
    assert reply["detail"] == (
        "1 of 2 events refused (listed in invalid, by index);"
        " the others were stored: resend only the refused ones, fixed"
    )


@pytest.mark.parametrize("path", ["/v1", "/v1/", "/v1//"])
def test_baselime_says_the_dataset_is_missing(client, path):
    assert baselime(client, b'[{"message": "m"}]', path=PREFIX + path) == (
        400,
        {"message": "Bad Request", "detail": "no dataset in the path: send to /v1/<dataset>"},
    )


def test_betterstack_empty_body_says_one_object_or_an_array(client):
    reply = client.request("POST", PREFIX + "/", b"", BS)
    assert (reply.status, reply.body) == (400, b"request body is empty: send one event object or an array of them")


def test_413s_name_the_limit(adapter):
    client = make_client(
        adapter,
        [BetterStackAPI([TOKEN], rate_limit=None, max_body_bytes=64), BaselimeAPI([KEY], max_body_bytes=2048)],
        MemorySink(),
    )
    reply = client.request("POST", PREFIX + "/", b"[" + b" " * 100 + b"]", BS)
    # Better Stack's body is the contract's words as they are: the limit is in a header.
    assert (reply.status, reply.body) == (413, b"payload reached size limit")
    assert reply.headers["x-size-limit"] == "64 bytes"
    assert baselime(client, b"[" + b" " * 3000 + b"]") == (
        413,
        {"message": "Payload Too Large", "detail": "the request body is larger than 2 KiB (uncompressed)"},
    )


def test_the_default_413s_name_20_and_6_mib(client):
    reply = client.request("POST", PREFIX + "/", b"", {**BS, "Content-Length": str(20 * 1024 * 1024 + 1)})
    assert (reply.status, reply.body, reply.headers["x-size-limit"]) == (413, b"payload reached size limit", "20 MiB")
    status, body = baselime(client, b"", {**BL, "Content-Length": str(6 * 1024 * 1024 + 1)})
    assert (status, body["detail"]) == (413, "the request body is larger than 6 MiB (uncompressed)")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"message": "a",}', "line 1, column 16 (byte 15): trailing comma is not allowed"),
        (
            b'[{"message": "a"},\n {"message": }]',
            "line 2, column 14 (byte 32): unexpected character, expected a JSON value",
        ),
    ],
)
def test_betterstack_invalid_json_keeps_the_contract_body_and_says_where_in_a_header(client, body, where):
    reply = client.request("POST", PREFIX + "/", body, BS)
    assert (reply.status, reply.body) == (406, b"Couldn't parse JSON content.")
    assert reply.headers["x-parse-error"] == where


def test_betterstack_invalid_ndjson_names_the_line(client):
    body = b'{"message": "a"}\n\n{"message": "b"\n'
    reply = client.request("POST", PREFIX + "/", body, {**BS, "Content-Type": "application/x-ndjson"})
    assert (reply.status, reply.body) == (406, b"Couldn't parse JSON content.")
    assert reply.headers["x-parse-error"].startswith("line 3, column ")


@pytest.mark.parametrize(
    ("body", "found"),
    [
        (b"\x81\x01\x01", "int is not allowed for map key when strict_map_key=True"),
        (b"\x92\x01", "Unpack failed: incomplete input"),
        (b"\xc1", "a byte that starts no MessagePack value (0xc1, say)"),
        (b"\x91" * 200_000, "nested deeper than the MessagePack decoder takes"),
        (b"\x81\xa1a\x01\x01", "extra bytes after the first value: send one value (an array of events)"),
    ],
)
def test_betterstack_invalid_msgpack_keeps_the_contract_body_and_says_what_in_a_header(client, body, found):
    reply = client.request("POST", PREFIX + "/", body, {**BS, "Content-Type": "application/msgpack"})
    assert (reply.status, reply.body) == (406, b"Couldn't parse MessagePack content.")
    assert reply.headers["x-parse-error"] == found


def test_a_path_no_api_claims_names_the_routes(client):
    reply = client.request("POST", PREFIX + "/logs", b"{}", BS)
    assert (reply.status, reply.body.decode()) == (
        404,
        f"Not Found: no ingest API at {PREFIX}/logs; the routes here are"
        f" POST {PREFIX}/ (Better Stack), POST {PREFIX}/v1/<dataset> (Baselime)",
    )


@pytest.mark.parametrize(("encoding", "module", "extra"), [("zstd", "backports.zstd", "zstd"), ("br", "brotli", "br")])
def test_a_missing_optional_decoder_is_a_415_naming_its_extra(encoding, module, extra):
    """In an interpreter where the optional package cannot be imported (as if not installed)."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules[{module!r}] = None  # import fails, as when the package is not installed
        sys.modules["compression.zstd"] = None
        from ingest_mw import BetterStackAPI, MemorySink, WSGIApp
        from ingest_mw.encoding import decoders_for
        try:
            decoders_for({encoding!r})
        except Exception as error:
            print(error.status, error.detail)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    status, _, detail = out.stdout.strip().partition(" ")
    assert status == "415"
    assert detail.startswith(f"unsupported Content-Encoding {encoding!r}; this server accepts: identity, gzip")
    assert detail.endswith(f"(its operator enables {encoding} with pip install 'ingest-mw[{extra}]')")


def test_a_msgpack_timestamp_past_year_9999_is_kept_as_nanoseconds_and_the_batch_stored(adapter):
    from datetime import UTC, datetime

    import msgpack

    sink = MemorySink()
    client = make_client(adapter, BetterStackAPI([TOKEN], rate_limit=None), sink)
    far = b"\xc7\x0c\xff" + bytes(4) + (2**62).to_bytes(8, "big")  # 2**62 seconds: no datetime holds it
    body = (
        b"\x92\x82\xa2dt" + far + b"\xa1i\x01" + msgpack.packb({"t": datetime(2024, 5, 1, tzinfo=UTC)}, datetime=True)
    )
    reply = client.request("POST", PREFIX + "/", body, {**BS, "Content-Type": "application/msgpack"})
    assert reply.status == 202
    first, second = sink.events
    assert first.data == {"dt": 2**62 * 10**9, "i": 1}  # its nanoseconds since the epoch
    assert first.time == sink.batches[0].received_at  # no time: stored under the reception time
    assert second.data == {"t": datetime(2024, 5, 1, tzinfo=UTC)}  # the others as ever
