"""What the server does with hostile or unlucky clients: a real ``ingest-mw serve`` on loopback, its defaults.

Which bytes the server stops reading after a refusal, how it answers while
SQLite is locked by another process, and whether the official Python client
delivers everything when the server refuses it for a while. Every loop is
bounded in count and time.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_process import Server

from ingest_mw.sinks import SQLiteSink

TOKEN = "hard-token"
MiB = 1024 * 1024


@pytest.fixture
def served(tmp_path):
    db = tmp_path / "ingest.db"
    server = Server(["--sink", f"sqlite:///{db}", "--token", f"web={TOKEN}", "--api-key", "team=key"])
    yield server, db
    server.stop()


def stored_count(db) -> int:
    with sqlite3.connect(db) as connection:
        return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])


class RawRequest:
    """A request written by hand on one connection, its answer read by a thread
    of its own while the body is still being sent (as a server that answers
    early expects)."""

    def __init__(self, port: int, head: bytes) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
        self.answer = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.sock.sendall(head)
        self.sent = 0

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.answer += chunk
        except OSError:
            pass

    def send_chunked(self, chunk: bytes, up_to: int) -> None:
        """Send ``chunk`` as chunks until ``up_to`` bytes or the server closes."""
        framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        try:
            while self.sent < up_to:
                self.sock.sendall(framed)
                self.sent += len(chunk)
        except OSError:
            pass  # closed (reset) by the server: what is tested

    def finish(self) -> tuple[int, dict[str, str]]:
        self._reader.join(10)
        self.sock.close()
        head = self.answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in head[1:])
        return int(head[0].split()[1]), {k.lower(): v for k, v in headers.items()}


def head(token: str, *extra: str) -> bytes:
    lines = ["POST / HTTP/1.1", "Host: test", f"Authorization: Bearer {token}", "Content-Type: application/json"]
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("token", "status", "read_before_refusal"),
    [
        ("wrong", 403, 0),  # refused before the body: nothing of it needed
        (TOKEN, 413, 20 * MiB),  # refused when the body passes 20 MiB
    ],
)
def test_a_refused_chunked_body_is_not_read_to_its_end(served, token, status, read_before_refusal):
    server, _ = served
    request = RawRequest(server.port, head(token, "Transfer-Encoding: chunked"))
    request.send_chunked(b"[" + b" " * (MiB - 1), up_to=4096 * MiB)  # a 4 GiB body, were it all sent
    code, headers = request.finish()
    assert code == status
    assert headers["connection"] == "close"
    assert request.sent < read_before_refusal + 64 * MiB  # the rest was never read


def test_a_declared_10_gib_body_is_refused_before_a_byte_of_it(served):
    server, _ = served
    request = RawRequest(server.port, head(TOKEN, f"Content-Length: {10 * 1024 * MiB}"))
    code, headers = request.finish()
    assert (code, headers["connection"]) == (413, "close")


def post_one(url: str, n: int) -> tuple[int, float, dict[str, str]]:
    body = json.dumps({"message": f"m{n}"}).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    started = time.monotonic()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, time.monotonic() - started, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, time.monotonic() - started, {k.lower(): v for k, v in error.headers.items()}


LOCK_SECONDS = 3.0  # under SQLite's 5 s busy timeout: the batches inside the hook get through


def test_a_locked_sqlite_file_gets_503s_within_the_storage_wait_and_loses_nothing(served):
    server, db = served
    assert post_one(server.url, -1)[0] == 202  # the table exists
    locker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True)\n"
            f"time.sleep({LOCK_SECONDS}); db.execute('COMMIT')\n",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdout.readline() == "locked\n"
        locked_at = time.monotonic()
        with ThreadPoolExecutor(100) as pool:
            replies = list(pool.map(lambda n: post_one(server.url, n), range(100)))
    finally:
        locker.wait(15)
    statuses = [status for status, _, _ in replies]
    assert set(statuses) <= {202, 503}
    refused = [(elapsed, headers) for status, elapsed, headers in replies if status == 503]
    assert len(refused) >= 100 - SQLiteSink.concurrent_batches  # at most serve's store slots reached the hook
    assert all(headers.get("retry-after") == "1" for _, headers in refused)
    # Every 503 within the storage wait (2 s), with room for a busy machine.
    assert max(elapsed for elapsed, _ in refused) < 2.0 + 1.5
    assert time.monotonic() - locked_at < LOCK_SECONDS + 6
    assert stored_count(db) == 1 + statuses.count(202)  # what was acknowledged, and nothing else


def test_logtail_python_retries_a_503_and_delivers_every_record(served):
    """The server refuses logtail's first upload (every request slot is held by
    a client that stalls mid-body); logtail retries a second later and is served."""
    from logtail import LogtailHandler

    server, db = served
    stalled = []
    for n in range(256):  # max_requests by default, 32 from each address (max_requests_per_client)
        source = (f"127.0.0.{2 + n // 32}", 0)
        connection = socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=source)
        connection.sendall(head(TOKEN, "Content-Length: 100") + b"[")
        stalled.append(connection)
    time.sleep(1.0)  # every stalled request is inside the flow, holding its slot

    handler = LogtailHandler(source_token=TOKEN, host=server.url, flush_interval=0.1, raise_exceptions=True)
    shipper = logging.getLogger("logtail-503")
    shipper.propagate = False
    shipper.addHandler(handler)
    shipper.setLevel(logging.INFO)
    try:
        for i in range(5):
            shipper.info("retried %d", i)
        time.sleep(0.5)  # the first upload is refused meanwhile
        for connection in stalled:
            connection.close()  # the server sees them go and frees their slots
        deadline = time.monotonic() + 10
        while stored_count(db) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        shipper.removeHandler(handler)
        handler.close()
    with sqlite3.connect(db) as connection:
        messages = sorted(json.loads(data)["message"] for (data,) in connection.execute("SELECT data FROM events"))
    assert messages == [f"retried {i}" for i in range(5)]
    _, stderr = server.stop()
    assert "(max_requests)" in stderr  # it was refused, and said so once
    assert stderr.count("(max_requests)") == 1
    assert "max_requests_per_client" not in stderr


def half_closed_post(server, body: bytes, *, sent: bytes | None = None) -> tuple[bytes, float]:
    """POST ``body`` (declared whole, ``sent`` of it sent), then close the sending
    side as HTTP/1.0 tools do; what the server answers before it closes, and when."""
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head + (body if sent is None else sent))
        sock.shutdown(socket.SHUT_WR)
        started, answer = time.monotonic(), b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer, time.monotonic() - started


def test_a_client_that_half_closes_after_its_request_still_gets_its_answer(served):
    server, db = served
    answer, _ = half_closed_post(server, b'{"message": "half closed"}')
    assert answer.startswith(b"HTTP/1.1 202 ")
    assert b"connection: close" in answer.lower()  # and nothing more is read on it
    assert stored_count(db) == 1
    # Closed mid-body, the request can never be whole: dropped at once, nothing stored.
    answer, waited = half_closed_post(server, b'{"message": "never whole"}', sent=b'{"mess')
    assert answer == b"" and waited < 5
    assert stored_count(db) == 1
