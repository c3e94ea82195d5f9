"""What ``serve``'s protocol writes: every answer whole and in order (pipelined,
in chunks of every size, from a buffer the app reuses, to a client that has
half-closed), and a client that reads nothing holds back an app that streams
to it.

A real uvicorn on loopback with ``GuardedHttpToolsProtocol``, the ingest API
mounted under ``/ingest`` in a host app; every loop is bounded in count and time.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_process import free_port, guarded_uvicorn

TOKEN = "writes-token"

HOST_APP = """
from ingest_mw.asgi import ASGIMiddleware
from ingest_mw.betterstack import BetterStackAPI
from ingest_mw.sinks import SQLiteSink

sent = 0
#: The chunks of /mixed: sizes below, at and over the protocol's hold, in turn.
SIZES = [1, 100, 65536, 70000, 3, 200000, 65535, 2, 1_000_000, 17]


def mixed():
    for number, size in enumerate(SIZES):
        yield bytes([65 + number]) * size


async def host(scope, receive, send):
    global sent
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/mixed":
        total = sum(SIZES)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % total)]})
        for chunk in mixed():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/forever":  # streams until its client is gone
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 65536
        while sent < 1024 * 1024 * 1024:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)
    elif path.startswith("/echo/"):
        body = path.encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": bytearray(body), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/reused":
        buffer = bytearray(b"abc")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
        await send({"type": "http.response.body", "body": buffer, "more_body": True})
        buffer[:] = b"def"
        await send({"type": "http.response.body", "body": buffer})
    else:
        body = str(sent).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})


app = ASGIMiddleware(host, BetterStackAPI({"web": TOKEN}), sink=SQLiteSink(DB), prefix="/ingest")
"""


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    db = tmp_path / "writes.db"
    (tmp_path / "writesapp.py").write_text(f"TOKEN = {TOKEN!r}\nDB = {str(db)!r}\n" + HOST_APP)
    port = free_port()
    process = guarded_uvicorn("writesapp:app", tmp_path, port)
    try:
        yield port, db
    finally:
        process.terminate()
        _, err = process.communicate(timeout=15)
    assert "Traceback" not in err, err


def one_event(number: int) -> bytes:
    body = json.dumps({"n": number}).encode()
    head = f"POST /ingest/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def read_until(sock: socket.socket, done: bytes, count: int, timeout: float = 10) -> bytes:
    """What the server sends until ``done`` has been seen ``count`` times."""
    sock.settimeout(timeout)
    received = b""
    while received.count(done) < count:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received.count(done)} of {count}"
        received += chunk
    return received


def test_pipelined_requests_on_one_connection_are_all_answered_and_stored_in_order(host):
    port, db = host
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"".join(one_event(number) for number in range(1, 51)))  # 50 at once
        received = read_until(sock, b"HTTP/1.1 ", 50)
        assert received.count(b"HTTP/1.1 202 Accepted\r\n") == 50, received[:500]
        sock.sendall(one_event(51))
        assert read_until(sock, b"HTTP/1.1 202 ", 1).startswith(b"HTTP/1.1 202 ")
    with sqlite3.connect(db) as connection:
        numbers = [json.loads(data)["n"] for (data,) in connection.execute("SELECT data FROM events ORDER BY rowid")]
    assert numbers == list(range(1, 52))


def test_pipelined_answers_come_back_in_the_order_of_their_requests(host):
    port, _ = host
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"".join(b"GET /echo/%d HTTP/1.1\r\nHost: x\r\n\r\n" % number for number in range(30)))
        received = read_until(sock, b"HTTP/1.1 200 ", 30)
        while not received.endswith(b"/echo/29"):
            received += sock.recv(65536)
    bodies = [answer.rpartition(b"\r\n\r\n")[2] for answer in received.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"/echo/%d" % number for number in range(30)]


def test_a_body_buffer_the_app_changes_after_sending_it_goes_out_as_it_was_sent(host):
    port, _ = host
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/reused", timeout=10) as response:
        assert response.read() == b"abcdef"


def test_a_client_that_half_closes_after_its_request_gets_the_answer_of_a_fast_app(host):
    # The answer is made in the turn of the event loop that reads the request,
    # and the client's FIN is read in that turn too.
    port, _ = host
    for number in range(20):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /echo/%d HTTP/1.1\r\nHost: x\r\n\r\n" % number)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(5)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"/echo/%d" % number), (number, received)


def test_an_answer_written_in_chunks_of_every_size_arrives_whole(host):
    port, _ = host
    sizes = [1, 100, 65536, 70000, 3, 200000, 65535, 2, 1_000_000, 17]
    expected = b"".join(bytes([65 + number]) * size for number, size in enumerate(sizes))
    for _ in range(3):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/mixed", timeout=10) as response:
            assert response.read() == expected


def test_a_client_that_reads_nothing_holds_back_an_app_that_streams_to_it(host):
    port, _ = host
    with socket.create_connection(("127.0.0.1", port)) as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        stalled.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")  # then reads nothing
        time.sleep(1.5)
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/sent", timeout=10) as response:
            sent = int(response.read())
        # The app waits on the transport's flow control: what it wrote is what the
        # socket buffers and one write buffer hold, not the 1 GiB it would send.
        assert 0 < sent < 64 * 1024 * 1024
        assert time.monotonic() - started < 2  # and the server answers others meanwhile


def test_run_app_serves_any_asgi_app_on_serves_stack_until_sigterm(tmp_path):
    # What bench/ runs its baseline apps with: serve's protocol and config, any app.
    (tmp_path / "plain.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-length', b'5')]})\n"
        "    await send({'type': 'http.response.body', 'body': b'plain'})\n"
    )
    port = free_port()
    code = f"import plain; from ingest_mw.serve.run import run_app; run_app(plain.app, port={port})"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    assert response.read() == b"plain"
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "run_app did not start"
                time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port)) as stalled:
            stalled.sendall(b"GET / HT")  # serve's header timeout guards it too (10 s): still open now
            time.sleep(0.2)
    finally:
        process.send_signal(15)
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0 and "Traceback" not in err, err
