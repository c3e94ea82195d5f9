"""``ingest-mw serve`` end to end: a real server on loopback, real HTTP, a real SQLite file."""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import shutil
import sqlite3
import subprocess
import time
import urllib.request
import zlib

import msgpack
import orjson
import pytest
from serve_process import Server

TOKEN = "serve-token"
KEY = "serve-key"


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def rows(db_path, where: str = "1=1") -> list[dict]:
    db = sqlite3.connect(db_path)
    db.row_factory = sqlite3.Row
    return [dict(r) for r in db.execute(f"SELECT * FROM events WHERE {where} ORDER BY id")]


@pytest.fixture
def served(tmp_path):
    db = tmp_path / "ingest.db"
    server = Server(["--sink", f"sqlite:///{db}", "--token", f"web={TOKEN}", "--api-key", f"team={KEY}"])
    yield server, db
    server.stop()


def test_better_stack_every_content_type_into_sqlite(served):
    server, db = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert post(
        server.url + "/",
        b'{"message":"logs is ready","nested":{"values":123}}',
        {**auth, "Content-Type": "application/json"},
    ) == (202, b"")
    assert (
        post(server.url, b'{"message":"A"}\n{"message":"B"}', {**auth, "Content-Type": "application/x-ndjson"})[0]
        == 202
    )
    packed = zlib.compress(msgpack.packb([{"message": "C", "dt": "2023-08-09 07:03:30+00:00"}]))
    assert (
        post(server.url, packed, {**auth, "Content-Type": "application/msgpack", "Content-Encoding": "deflate"})[0]
        == 202
    )
    stored = rows(db)
    assert [json.loads(r["data"])["message"] for r in stored] == ["logs is ready", "A", "B", "C"]
    assert {(r["api"], r["source"]) for r in stored} == {("betterstack", "web")}
    assert json.loads(stored[3]["data"])["dt"] == "2023-08-09 07:03:30+00:00"  # too old: kept as sent
    assert stored[3]["dt"] == stored[3]["received_at"]
    assert post(server.url, b"{}", {"Authorization": "Bearer nope", "Content-Type": "application/json"}) == (
        403,
        b"Unauthorized",
    )


def test_baselime_spec_example_into_sqlite(served):
    server, db = served
    namespace = "https://api.domain.com/resource/{id}"
    body = orjson.dumps(
        [
            {"message": "This is an example log event", "requestId": "6092d6f0", "namespace": namespace},
            {"message": "This is another example log event", "data": {"userId": "01HB"}, "duration": 127},
            {"message": "its own service", "service": "worker"},
        ]
    )
    headers = {"x-api-key": KEY, "Content-Type": "application/json", "x-service": "my-service", "x-namespace": "hdr"}
    status, reply = post(server.url + "/v1/logs", body, headers)
    assert (status, json.loads(reply)) == (202, {"message": "Request Accepted"})
    stored = rows(db, "api = 'baselime'")
    # An event's own service/namespace wins; the headers' apply to the others.
    assert [(r["source"], r["dataset"], r["service"], r["namespace"]) for r in stored] == [
        ("team", "logs", "my-service", namespace),
        ("team", "logs", "my-service", "hdr"),
        ("team", "logs", "worker", "hdr"),
    ]
    status, reply = post(server.url + "/logs", body, {"x-api-key": KEY, "Content-Type": "application/json"})
    assert (status, reply) == (
        404,
        b"Not Found: no ingest API at /logs; the routes here are"
        b" POST / (Better Stack), POST /otlp/v1/logs (OTLP logs), POST /v1/<dataset> (Baselime)",
    )
    # Another version of Baselime's path is its invalid path parameter: the contract's 400.
    status, reply = post(server.url + "/v2/logs", body, {"x-api-key": KEY, "Content-Type": "application/json"})
    assert (status, json.loads(reply)["message"]) == (400, "Bad Request")


def test_headers_sent_twice_over_real_http(served):
    """What a fetch()-based client sends (one header, joined) and what two header
    lines become: the same header twice with one value is that value."""
    server, db = served
    sent = [
        ("/", [("Authorization", f"Bearer {TOKEN}"), ("Content-Type", "application/json, application/json")]),
        ("/", [("Authorization", f"Bearer {TOKEN}")] * 2 + [("Content-Type", "application/json")] * 2),
        (
            "/v1/logs",
            [
                ("x-api-key", KEY),
                ("x-api-key", KEY),
                ("Content-Type", "application/json"),
                ("content-type", "application/json"),
            ]
            + [("x-service", "svc"), ("x-service", "svc")],
        ),
    ]
    for path, headers in sent:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        body = b'[{"message": "twice"}]'
        connection.putrequest("POST", path)
        for name, value in [*headers, ("Content-Length", str(len(body)))]:
            connection.putheader(name, value)
        connection.endheaders(body)
        assert connection.getresponse().status == 202, (path, headers)
        connection.close()
    assert [(r["api"], r["service"]) for r in rows(db)] == [("betterstack", None)] * 2 + [("baselime", "svc")]


def test_chunked_body_over_the_limit_gets_413(served):
    server, db = served
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    connection.putrequest("POST", "/")
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    chunk = b" " * (1024 * 1024)
    try:
        for _ in range(64):  # 64 MiB offered, the limit is 20 MiB
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server stopped reading and closed: what we want
    response = connection.getresponse()
    assert (response.status, response.read()) == (413, b"payload reached size limit")
    assert response.getheader("X-Size-Limit") == "20 MiB"
    assert rows(db) == []


def test_sigterm_shuts_down_cleanly_with_acknowledged_events_on_disk(tmp_path):
    db = tmp_path / "t.db"
    server = Server(["--sink", f"sqlite:///{db}", "--token", TOKEN, "--api-key", KEY])
    events = [{"n": i} for i in range(200)]
    for i in range(0, 200, 20):
        assert (
            post(
                server.url,
                orjson.dumps(events[i : i + 20]),
                {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )[0]
            == 202
        )
    code, err = server.stop()
    assert code == 0, err
    assert "Traceback" not in err
    assert [json.loads(r["data"])["n"] for r in rows(db)] == list(range(200))


def test_credentials_from_environment(tmp_path):
    env = {"INGEST_MW_TOKENS": "a=t1, b=t2", "INGEST_MW_API_KEYS": "k1"}
    db = tmp_path / "env.db"
    server = Server(["--sink", f"sqlite:///{db}"], env=env)
    try:
        assert post(server.url, b"{}", {"Authorization": "Bearer t2", "Content-Type": "application/json"})[0] == 202
        assert post(server.url + "/v1/d", b"[{}]", {"x-api-key": "k1", "Content-Type": "application/json"})[0] == 202
    finally:
        server.stop()
    assert [(r["api"], r["source"]) for r in rows(db)] == [("betterstack", "b"), ("baselime", "default")]


def test_jsonl_sink_and_console_script(tmp_path):
    assert shutil.which("ingest-mw"), "the console script is installed"
    out = subprocess.run(["ingest-mw", "serve", "--help"], capture_output=True, text=True, check=True).stdout
    for flag in ("--host", "--port", "--sink", "--token", "--api-key"):
        assert flag in out
    path = tmp_path / "events.jsonl"
    server = Server(["--sink", f"jsonl:///{path}", "--token", TOKEN, "--api-key", KEY])
    try:
        body = gzip.compress(b'[{"message":"zipped"}]')
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", "Content-Encoding": "gzip"}
        assert post(server.url, body, headers)[0] == 202
    finally:
        server.stop()
    assert json.loads(path.read_text())["data"] == {"message": "zipped"}


def test_official_logtail_python_client_delivers_its_records(served):
    from logtail import LogtailHandler

    server, db = served
    handler = LogtailHandler(source_token=TOKEN, host=server.url, flush_interval=0.1, raise_exceptions=True)
    logger = logging.getLogger("logtail-e2e")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for i in range(5):
            logger.info("shipped by logtail %d", i, extra={"order": i})
        handler.flush()
        deadline = time.monotonic() + 10
        while len(rows(db)) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        logger.removeHandler(handler)
        handler.close()
    stored = rows(db)
    messages = sorted(json.loads(r["data"])["message"] for r in stored)
    assert messages == [f"shipped by logtail {i}" for i in range(5)]
    # logtail sends a recent dt: it becomes the event time, not the reception time.
    assert all(r["dt"] < r["received_at"] for r in stored)
    assert {json.loads(r["data"])["level"] for r in stored} == {"info"}


def test_parse_credentials_keeps_equals_signs_in_bare_secrets():
    from ingest_mw.cli import parse_credentials

    assert parse_credentials(["dGVzdA=="]) == {"default": "dGVzdA=="}
    assert parse_credentials(["web=abc=", "=x", "a", "b=="]) == {
        "web": "abc=",
        "default-1": "=x",
        "default-2": "a",
        "default-3": "b==",
    }
