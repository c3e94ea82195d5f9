"""Headers a client sent twice, on both APIs and through both adapters.

A header repeated on the wire reaches an app as one comma-joined value under
WSGI (wsgiref, gunicorn and werkzeug join repeated lines so) and as several
raw pairs under ASGI; a ``fetch()`` client that was given ``Content-Type`` and
``content-type`` sends one joined line. Each case below is sent both ways.
"""

from __future__ import annotations

import asyncio
import gzip
import io
from typing import Any

import orjson
import pytest

from ingest_mw import ASGIApp, BaselimeAPI, BetterStackAPI, MemorySink, SQLiteSink, WSGIApp

TOKEN = "tok"
KEY = "key"
MOUNT = "/mnt"
BODY = b'[{"message": "twice"}]'
Headers = list[tuple[str, str]]


def call(adapter: str, app: Any, path: str, headers: Headers, body: bytes = BODY) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` with ``headers`` (each pair one header line) through ``adapter``."""
    if adapter == "wsgi":
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": MOUNT,
            "PATH_INFO": path,
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(body),
        }
        for name, value in headers:
            key = name.upper().replace("-", "_")
            key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value  # as servers join them
        if "CONTENT_LENGTH" not in environ:
            environ["CONTENT_LENGTH"] = str(len(body))
        started: list[Any] = []
        out = b"".join(app(environ, lambda status, headers_: started.extend([status, headers_])))
        return int(started[0].split()[0]), {k.lower(): v for k, v in started[1]}, out

    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw = [(name.lower().encode(), value.encode()) for name, value in headers]
    if not any(name == b"content-length" for name, _ in raw):
        raw.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": "POST", "path": MOUNT + path, "root_path": MOUNT, "headers": raw}
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, sent[1]["body"]


def make(adapter: str, sink: Any) -> Any:
    apis = [BetterStackAPI({"web": TOKEN}, rate_limit=None), BaselimeAPI({"team": KEY})]
    return (WSGIApp if adapter == "wsgi" else ASGIApp)(apis, sink=sink)


BEARER = ("Authorization", f"Bearer {TOKEN}")
JSON = ("Content-Type", "application/json")


@pytest.mark.parametrize(
    "headers",
    [
        [BEARER, ("Content-Type", "application/json, application/json")],  # fetch() joined them
        [BEARER, JSON, ("content-type", "application/json")],  # two lines
        [BEARER, ("Content-Type", "application/json; charset=utf-8, application/json")],  # parameters aside
        [BEARER, BEARER, JSON],
        [("Authorization", f"Bearer {TOKEN}, Bearer {TOKEN}"), JSON],
        [BEARER, JSON, ("Content-Length", f"{len(BODY)}, {len(BODY)}")],
    ],
)
def test_betterstack_a_header_sent_twice_with_one_value_is_that_value(adapter, headers):
    sink = MemorySink()
    assert call(adapter, make(adapter, sink), "/", headers)[0] == 202
    assert [event.data for event in sink.events] == [{"message": "twice"}]


def test_betterstack_two_different_media_types_are_a_415_that_says_so(adapter):
    sink = MemorySink()
    status, _, body = call(adapter, make(adapter, sink), "/", [BEARER, JSON, ("Content-Type", "text/plain")])
    assert (status, body.decode()) == (
        415,
        "Content-Type names several media types (application/json, text/plain): send one",
    )
    assert sink.batches == []


def test_two_different_credentials_are_refused(adapter):
    sink = MemorySink()
    app = make(adapter, sink)
    assert call(adapter, app, "/", [BEARER, ("Authorization", "Bearer other"), JSON])[:3:2] == (403, b"Unauthorized")
    status, _, body = call(adapter, app, "/v1/logs", [("x-api-key", KEY), ("x-api-key", "other"), JSON])
    assert (status, orjson.loads(body)["message"]) == (401, "Unauthorised")
    assert sink.batches == []


def test_conflicting_content_lengths_are_a_400(adapter):
    status, _, body = call(adapter, make(adapter, MemorySink()), "/", [BEARER, JSON, ("Content-Length", "22, 23")])
    assert status == 400
    assert body.decode().startswith("conflicting Content-Length values")


def test_content_encoding_sent_twice_is_two_layers(adapter):
    """RFC 9110: a list of encodings, in the order applied, repeated or not."""
    sink = MemorySink()
    app = make(adapter, sink)
    twice = [BEARER, JSON, ("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")]
    assert call(adapter, app, "/", twice, gzip.compress(gzip.compress(BODY)))[0] == 202
    status, _, body = call(adapter, app, "/", twice, gzip.compress(BODY))
    assert (status, body.decode()) == (
        400,
        "request body is not valid gzip data (Content-Encoding: gzip); Content-Encoding names gzip twice,"
        " which means compressed twice: send it once for a body compressed once",
    )
    assert len(sink.events) == 1


@pytest.mark.parametrize(
    "headers",
    [
        [("x-api-key", KEY), ("Content-Type", "application/json, application/json")],
        [("x-api-key", KEY), ("x-api-key", KEY), JSON, ("content-type", "application/json")],
    ],
)
def test_baselime_a_header_sent_twice_with_one_value_is_that_value(adapter, headers):
    sink = MemorySink()
    status, _, body = call(adapter, make(adapter, sink), "/v1/logs", headers)
    assert (status, orjson.loads(body)) == (202, {"message": "Request Accepted"})
    assert len(sink.events) == 1


def test_baselime_two_different_media_types_are_a_415(adapter):
    status, _, body = call(
        adapter, make(adapter, MemorySink()), "/v1/logs", [("x-api-key", KEY), JSON, ("Content-Type", "text/csv")]
    )
    assert status == 415
    assert orjson.loads(body) == {
        "message": "Unsupported Media Type",
        "detail": "Content-Type names several media types (application/json, text/csv): send one",
    }


@pytest.mark.parametrize(
    ("service_lines", "stored"),
    [
        (["svc", "svc"], "svc"),  # one value sent twice
        (["svc, svc"], "svc"),
        (["a", "b"], "a,b"),  # differing values are kept as the server joined them: a name may hold a comma
    ],
)
def test_baselime_service_and_namespace_sent_twice(adapter, tmp_path, service_lines, stored):
    sqlite = SQLiteSink(tmp_path / "events.db")
    headers = [("x-api-key", KEY), JSON]
    headers += [("x-service", value) for value in service_lines] + [("x-namespace", value) for value in service_lines]
    assert call(adapter, make(adapter, sqlite), "/v1/logs", headers)[0] == 202
    row = sqlite._db.execute("SELECT service, namespace FROM events").fetchone()
    sqlite.close()
    joined = stored if adapter == "wsgi" or stored == "svc" else stored.replace(",", ", ")
    assert row == (joined, joined)
