"""``ingest-mw tail`` end to end: files written by a real ``serve``, read by a real ``tail`` process."""

from __future__ import annotations

import importlib.util
import json
import os
import pty
import queue
import select
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from serve_process import Server

TOKEN = "tail-token"
KEY = "tail-key"


def post(url: str, body: object, headers: dict[str, str]) -> int:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def tail(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ingest_mw", "tail", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def lines(result: subprocess.CompletedProcess[str]) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


class Follower:
    """A ``tail --follow`` process whose output lines are read by a thread, each waited for in bounded time."""

    def __init__(self, *args: str) -> None:
        command = [sys.executable, "-m", "ingest_mw", "tail", "--follow", "--json", *args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)

    def messages(self, count: int, timeout: float = 10) -> list[str]:
        deadline = time.monotonic() + timeout
        found = []
        for _ in range(count):
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            found.append(json.loads(line)["data"]["message"])
        return found

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def messages(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [row["data"]["message"] for row in lines(result)]


try:  # a real PostgreSQL server, where the PostgreSQL sink and its fixture are there
    from postgres_fixture import pg_table, postgres_server  # noqa: F401
except ImportError:
    pg_table = postgres_server = None


def sink_url(request, tmp_path) -> str:
    if request.param != "postgres":
        return f"{request.param}:///{tmp_path / ('events.db' if request.param == 'sqlite' else 'events.jsonl')}"
    if postgres_server is None or importlib.util.find_spec("ingest_mw.sinks.postgres") is None:
        pytest.skip("needs the PostgreSQL sink (ingest_mw.sinks.postgres) and tests/postgres_fixture.py")
    return f"{request.getfixturevalue('postgres_server').url}?table={request.getfixturevalue('pg_table')}"


@pytest.fixture(params=["sqlite", "jsonl", "postgres"])
def stored(request, tmp_path):
    """A real serve writing to a real file (or a real PostgreSQL), with events from both APIs;
    yields (server, --sink URL)."""
    url = sink_url(request, tmp_path)
    server = Server(["--sink", url, "--token", f"web={TOKEN}", "--api-key", f"team={KEY}"])
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    old = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    assert post(server.url, {"message": "an older one", "level": "info", "dt": old}, bearer) == 202
    assert (
        post(server.url, [{"message": "first", "level": "info"}, {"message": "disk full", "level": "ERROR"}], bearer)
        == 202
    )
    assert (
        post(
            server.url + "/v1/payments",
            [{"message": "charged", "level": "warn", "amount": 12}],
            {"x-api-key": KEY, "x-service": "billing"},
        )
        == 202
    )
    yield server, url
    server.stop()


def test_tail_prints_the_stored_rows_oldest_first(stored):
    server, url = stored
    rows = lines(tail("--sink", url, "--json"))
    assert [row["data"]["message"] for row in rows] == ["an older one", "first", "disk full", "charged"]
    assert rows[3]["api"] == "baselime" and rows[3]["source"] == "team"
    assert rows[3]["dataset"] == "payments" and rows[3]["service"] == "billing"
    assert rows[3]["data"] == {"message": "charged", "level": "warn", "amount": 12}
    assert set(rows[0]) >= {"received_at", "dt", "api", "source", "dataset", "service", "namespace", "data"}
    assert ("id" in rows[0]) != url.startswith("jsonl")  # the stored row: a table keeps ids, JSON Lines does not
    # Not on a terminal: JSON without being asked.
    assert lines(tail("--sink", url)) == rows
    assert messages(tail("--sink", url, "--limit", "2")) == ["disk full", "charged"]


#: Each filter of the command line and what it leaves, all read from one serve's storage.
FILTER_CASES = [
    (["--api", "baselime"], ["charged"]),
    (["--source", "web"], ["an older one", "first", "disk full"]),
    (["--dataset", "payments"], ["charged"]),
    (["--service", "billing"], ["charged"]),
    (["--level", "error"], ["disk full"]),
    (["--level", "warn,ERROR"], ["disk full", "charged"]),
    (["--grep", "DISK"], ["disk full"]),
    (["--grep", "AMOUNT"], ["charged"]),
    (["--source", "web", "--level", "info"], ["an older one", "first"]),
    (["--since", "5m"], ["first", "disk full", "charged"]),
    (["--since", "15m"], ["an older one", "first", "disk full", "charged"]),
    (["--until", "5m"], ["an older one"]),
    (["--api", "otlp"], []),
]


def test_tail_filters(stored):
    # One test per sink, not one per case: each case is a tail process, and a
    # serve of its own per case cost more than all the cases together.
    server, url = stored
    for flags, expected in FILTER_CASES:
        assert messages(tail("--sink", url, *flags)) == expected, flags


def test_since_an_iso_time(stored):
    server, url = stored
    since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    assert messages(tail("--sink", url, "--utc", "--since", since)) == ["first", "disk full", "charged"]
    assert messages(tail("--sink", url, "--since", since + "+00:00")) == ["first", "disk full", "charged"]


def on_a_terminal(url: str) -> str:
    """What ``tail --utc`` prints on a terminal (a pty), colours on."""
    leader, follower = pty.openpty()
    command = [sys.executable, "-m", "ingest_mw", "tail", "--sink", url, "--utc"]
    process = subprocess.Popen(command, stdout=follower, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": ""})
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=10)
    os.close(leader)
    return output.decode()


def test_on_a_terminal_one_line_per_event(stored):
    server, url = stored
    printed = [line for line in on_a_terminal(url).splitlines() if line.strip()]
    assert len(printed) == 4
    assert "\x1b[31mERROR" in printed[2] and "web disk full" in printed[2]  # the level coloured
    assert "team/payments/billing charged" in printed[3] and '{"amount":12}' in printed[3]
    assert printed[1].startswith("\x1b[2m" + datetime.now(UTC).strftime("%Y-%m-%d "))  # the time, dimmed


def test_on_a_terminal_an_events_control_characters_are_shown_not_sent(tmp_path):
    # Whoever holds an ingest credential writes the text the operator's terminal
    # reads: an escape sequence or a line break in it is shown as its escape.
    url = f"sqlite:///{tmp_path / 'events.db'}"
    server = Server(["--sink", url, "--token", f"web={TOKEN}", "--api-key", f"team={KEY}"])
    try:
        hostile = {
            "message": "esc \x1b[2J\x1b]0;pwned\x07 end\nFAKE 2026-12-01 00:00:00.000 ERROR root forged\r",
            "level": "in\x1b[5mfo",
        }
        assert post(server.url, hostile, {"Authorization": f"Bearer {TOKEN}"}) == 202
        labelled = [{"message": "ok", "service": "svc\x1b[31mRED\u202e"}]
        assert post(server.url + "/v1/ds", labelled, {"x-api-key": KEY}) == 202
    finally:
        server.stop()
    printed = [line for line in on_a_terminal(url).splitlines() if line.strip()]
    assert len(printed) == 2  # no forged line
    assert "\x1b[2J" not in printed[0] and "\x1b]0;" not in printed[0] and "\x07" not in printed[0]
    assert "esc \\x1b[2J\\x1b]0;pwned\\x07 end\\nFAKE" in printed[0] and "forged\\r" in printed[0]
    assert "IN\\x1b[5MFO" in printed[0]
    assert "team/ds/svc\\x1b[31mRED\\u202e ok" in printed[1]


def test_follow_prints_events_posted_while_it_runs(stored):
    server, url = stored
    follower = Follower("--sink", url, "--level", "error")
    try:
        assert follower.messages(1) == ["disk full"]  # what was there
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        for index in range(3):
            body = [{"message": f"noise {index}"}, {"message": f"late {index}", "level": "error"}]
            assert post(server.url, body, bearer) == 202
        assert follower.messages(3) == ["late 0", "late 1", "late 2"]
        assert follower.process.poll() is None  # still following
    finally:
        follower.stop()


def test_follow_does_not_block_the_writer(stored):
    """While tail follows, serve goes on storing: every post is answered and stored, in order."""
    server, url = stored
    follower = Follower("--sink", url, "--limit", "0")
    try:
        assert len(follower.messages(4)) == 4
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        for index in range(50):
            assert post(server.url, {"message": f"burst {index}"}, bearer) == 202
        assert follower.messages(50) == [f"burst {index}" for index in range(50)]
    finally:
        follower.stop()


def test_bad_input_gets_one_clear_line(tmp_path):
    not_db = tmp_path / "notes.txt"
    not_db.write_text("hello\n")
    empty_db = tmp_path / "other.db"
    sqlite3.connect(empty_db).execute("CREATE TABLE things (x)")
    cases = [
        (["--sink", "ftp://localhost"], "unknown sink URL 'ftp://localhost'"),
        (["--sink", f"sqlite:///{not_db}"], "not an ingest database"),
        (["--sink", f"sqlite:///{empty_db}"], "not an ingest database (no events table)"),
        (["--sink", f"jsonl:///{not_db}"], "not an ingest JSON Lines file"),
        (["--sink", f"sqlite:///{tmp_path / 'missing.db'}"], "no such file"),
        (["--sink", "memory://"], "browse it on the /ui page"),
        (["--sink", f"sqlite:///{empty_db}", "--since", "yesterday"], "cannot read the time 'yesterday'"),
    ]
    for flags, message in cases:
        result = tail(*flags)
        assert result.returncode == 2, flags
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr, (flags, result.stderr)
