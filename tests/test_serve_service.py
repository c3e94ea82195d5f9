"""``ingest-mw serve`` as a service: workers, credentials kept across restarts,
environment variables, start-up mistakes, connection protections, shutdown
and logs. Real ``serve`` processes on loopback, small limits, bounded in time."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from serve_process import Server, free_port, guarded_uvicorn, serve_command

TOKEN = "service-token"
KEY = "service-key"
JSON = {"Content-Type": "application/json"}


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 10) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **JSON}


def stored_numbers(db: Path) -> list[int]:
    with sqlite3.connect(db) as connection:
        return [json.loads(data)["n"] for (data,) in connection.execute("SELECT data FROM events")]


def children(pid: int) -> set[int]:
    """The worker processes of a supervisor (its children, minus multiprocessing's helpers)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"resource_tracker" not in cmdline:
                found.add(int(child))
    return found


# --- workers ----------------------------------------------------------------------


def test_two_workers_share_one_sqlite_file_and_a_killed_worker_loses_nothing_acknowledged(tmp_path):
    db = tmp_path / "shared.db"
    server = Server(
        ["--workers", "2", "--sink", f"sqlite:///{db}", "--token", TOKEN, "--api-key", KEY, "--rate-limit", "none"]
    )
    acknowledged: list[int] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 20

    def client(first: int) -> None:
        for n in range(first, first + 150):  # bounded in count and in time
            if time.monotonic() > stop_at:
                return
            try:
                status = post(server.url, orjson.dumps({"n": n}), bearer(), timeout=5)
            except OSError:  # the killed worker's connections
                continue
            if status == 202:
                with lock:
                    acknowledged.append(n)

    try:
        deadline = time.monotonic() + 15
        while len(workers := children(server.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(workers) == 2
        threads = [threading.Thread(target=client, args=(i * 1000,)) for i in range(8)]
        for thread in threads:
            thread.start()
        while len(acknowledged) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        for thread in threads:
            thread.join(30)
        replaced = children(server.process.pid)
        deadline = time.monotonic() + 15
        while (len(replaced) < 2 or victim in replaced) and time.monotonic() < deadline:
            time.sleep(0.1)
            replaced = children(server.process.pid)
        assert len(replaced) == 2 and victim not in replaced, "the killed worker is replaced"
        assert post(server.url, orjson.dumps({"n": -1}), bearer()) == 202
    finally:
        code, err = server.stop()
    assert code == 0, err
    stored = stored_numbers(db)
    assert len(acknowledged) > 300
    assert set(acknowledged) <= set(stored), "every acknowledged event is stored"
    assert len(stored) == len(set(stored)), "no event stored twice"


def test_memory_rate_limit_storage_with_workers_says_each_counts_alone(tmp_path):
    server = Server(["--workers", "2", "--sink", "memory://", "--token", TOKEN, "--api-key", KEY])
    try:
        line = server.wait_for_line("each worker counts alone")
        assert "redis://" in line
    finally:
        server.stop()


# --- credentials --------------------------------------------------------------------


def test_generated_credentials_are_kept_and_accepted_again_after_a_restart(tmp_path):
    db = tmp_path / "events.db"
    server = Server(["--sink", f"sqlite:///{db}"])
    try:
        curl = server.wait_for_line("curl -X POST " + server.url + "/ ")
        token = curl.split("Bearer ", 1)[1].split("'", 1)[0]
        assert post(server.url, b'{"n":1}', bearer(token)) == 202
    finally:
        server.stop()
    kept = Path(f"{db}.credentials.json")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    restarted = Server(["--sink", f"sqlite:///{db}"])
    try:
        assert token in restarted.wait_for_line("curl -X POST " + restarted.url + "/ ")
        key = restarted.wait_for_line("/v1/logs").split("x-api-key: ", 1)[1].split("'", 1)[0]
        assert post(restarted.url, b'{"n":2}', bearer(token)) == 202
        assert post(restarted.url + "/v1/logs", b'[{"n":3}]', {"x-api-key": key, **JSON}) == 202
    finally:
        restarted.stop()
    assert stored_numbers(db) == [1, 2, 3]


def test_state_dir_keeps_generated_credentials_for_a_memory_sink(tmp_path):
    first = Server(["--sink", "memory://", "--state-dir", str(tmp_path / "state")])
    first.stop()
    second = Server(["--sink", "memory://", "--state-dir", str(tmp_path / "state")])
    try:
        token = json.loads((tmp_path / "state" / "credentials.json").read_text())["betterstack_tokens"]["default"]
        assert post(second.url, b"{}", bearer(token)) == 202
    finally:
        second.stop()


def test_token_and_api_key_files_and_a_warning_for_a_file_others_can_read(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("# Better Stack sources\nweb=file-token\n\nops=other-token\n")
    tokens.chmod(0o644)
    keys = tmp_path / "keys"
    keys.write_text("file-key\n")
    keys.chmod(0o600)
    db = tmp_path / "f.db"
    server = Server(["--sink", f"sqlite:///{db}", "--token-file", str(tokens), "--api-key-file", str(keys)])
    try:
        assert "chmod 600" in server.wait_for_line(f"--token-file {tokens} can be read by other users")
        assert not [line for line in server.lines if str(keys) in line and "other users" in line]
        assert post(server.url, b'{"n":1}', bearer("other-token")) == 202
        assert post(server.url + "/v1/d", b'[{"n":2}]', {"x-api-key": "file-key", **JSON}) == 202
        assert post(server.url, b'{"n":3}', bearer("web=file-token")) == 403
    finally:
        server.stop()
    with sqlite3.connect(db) as connection:
        assert list(connection.execute("SELECT source FROM events ORDER BY id")) == [("ops",), ("default",)]
    assert not Path(f"{db}.credentials.json").exists(), "nothing generated when every credential is given"


def test_every_flag_has_an_environment_variable(tmp_path):
    db = tmp_path / "env.db"
    env = {
        "INGEST_MW_SINK": f"sqlite:///{db}",
        "INGEST_MW_TOKENS": f"a={TOKEN}",
        "INGEST_MW_API_KEYS": KEY,
        "INGEST_MW_RATE_LIMIT": "2/minute",
        "INGEST_MW_LOG_FORMAT": "json",
    }
    server = Server([], env=env, log_level="info")
    try:
        statuses = [post(server.url, b'{"n":1}', bearer()) for _ in range(3)]
        assert statuses == [202, 202, 429]
        line = json.loads(server.wait_for_line("sink:"))
        assert line["message"] == f"sink: sqlite:///{db}"
    finally:
        server.stop()
    assert stored_numbers(db) == [1, 1]


def test_a_flag_wins_over_its_environment_variable(tmp_path):
    server = Server(
        ["--sink", "memory://", "--token", TOKEN, "--api-key", KEY, "--rate-limit", "none"],
        env={"INGEST_MW_RATE_LIMIT": "1/minute"},
    )
    try:
        assert [post(server.url, b"{}", bearer()) for _ in range(3)] == [202] * 3
    finally:
        server.stop()


# --- start-up mistakes ------------------------------------------------------------------


def start_failure(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, preexec_fn=None
) -> tuple[int, str]:
    done = subprocess.run(
        serve_command(args),
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        preexec_fn=preexec_fn,
    )
    return done.returncode, done.stderr


def test_unwritable_paths_are_one_line_and_status_2(tmp_path):
    from test_health import _without_dac_override  # root writes through permissions unless it loses that

    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "old.db").write_bytes(b"")
    locked.chmod(0o555)
    cases = [
        (["--sink", f"sqlite:///{locked}/new.db"], f"--sink sqlite:///{locked}/new.db: cannot open it"),
        (
            ["--sink", f"jsonl:///{locked}/x.jsonl"],
            f"--sink jsonl:///{locked}/x.jsonl: cannot open it: JSON Lines sink {locked}/x.jsonl: Permission denied",
        ),
        (["--sink", "memory://", "--state-dir", str(locked)], f"{locked}/credentials.json: cannot keep"),
    ]
    try:
        for args, expected in cases:
            try:
                code, err = start_failure(args, preexec_fn=_without_dac_override if os.geteuid() == 0 else None)
            except subprocess.SubprocessError as exc:  # prctl refused: a container without CAP_SETPCAP
                pytest.skip(f"cannot run a child without CAP_DAC_OVERRIDE as root here: {exc}")
            assert (code, err.count("\n")) == (2, 1), (args, err)
            assert expected in err, (args, err)
    finally:
        locked.chmod(0o755)


@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def mistakes(tmp_path: Path, busy_port: int) -> list[tuple[list[str], dict[str, str], str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    return [
        (["--port", "70000"], {}, "'70000' is not a port"),
        (["--log-level", "loud"], {}, "'loud' is not one of critical"),
        (["--workers", "0"], {}, "'0' is not a number of workers"),
        (["--header-timeout", "0"], {}, "'0' is not a duration"),
        (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
        ([], {"INGEST_MW_PORT": "eighty"}, "environment variable INGEST_MW_PORT: 'eighty' is not a port"),
        (["--sink", "sqlite:////no/such/dir/x.db"], {}, "--sink sqlite:////no/such/dir/x.db: cannot open it"),
        (["--sink", f"sqlite:///{a_file}/x.db"], {}, f"--sink sqlite:///{a_file}/x.db: cannot open it"),
        (["--sink", "jsonl:////no/such/dir/x.jsonl"], {}, "--sink jsonl:////no/such/dir/x.jsonl: cannot open it"),
        (["--sink", "bogus://x"], {}, "unknown sink URL bogus://x"),
        (["--port", str(busy_port)], {}, f"cannot listen on 127.0.0.1:{busy_port}: Address already in use"),
        (["--host", "no-such-host.invalid"], {}, "--host no-such-host.invalid:"),
        (["--rate-limit", "lots"], {}, "--rate-limit lots"),
        (["--trusted-proxy", "10.0.0.1/8"], {}, "10.0.0.1/8"),
        (["--rate-limit-storage", "nosuch://x"], {}, "unknown rate-limit storage scheme 'nosuch'"),
        (
            ["--rate-limit-storage", f"redis://:hunter2@127.0.0.1:{free_port()}/0"],
            {},
            "--rate-limit-storage redis://:***@127.0.0.1:",
        ),
        (["--token-file", str(tmp_path / "missing")], {}, f"--token-file {tmp_path / 'missing'}: cannot read it"),
        (["--token-file", str(a_file)], {}, f"--token-file {a_file}: no secret in it"),
        (["--sink", "memory://", "--state-dir", str(a_file / "state")], {}, f"{a_file / 'state'}"),
    ]


def test_each_start_up_mistake_is_one_line_and_status_2(tmp_path, busy_port):
    for args, env, expected in mistakes(tmp_path, busy_port):
        code, err = start_failure(["--sink", f"sqlite:///{tmp_path / 'ok.db'}", *args], env, cwd=tmp_path)
        assert (code, err.count("\n")) == (2, 1), (args, err)
        assert expected in err, (args, err)
        assert "Traceback" not in err and "hunter2" not in err


def test_a_missing_extra_is_one_line_saying_what_to_install(tmp_path):
    # A package that is not importable, as on a machine without the serve extra.
    absent = tmp_path / "absent" / "httptools"
    absent.mkdir(parents=True)
    (absent / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'httptools'\", name='httptools')\n"
    )
    path = os.pathsep.join([str(tmp_path / "absent"), os.environ.get("PYTHONPATH", "")])
    code, err = start_failure(["--sink", "memory://"], {"PYTHONPATH": path})
    assert (code, err) == (
        2,
        "ingest-mw serve: error: ingest-mw serve needs httptools: pip install 'ingest-mw[serve]'\n",
    )


def test_a_wrong_redis_password_is_fatal_at_start_up(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.config_set("requirepass", "right")
    try:
        uri = redis_server.url.replace("redis://", "redis://:wrong@")
        code, err = start_failure(["--sink", "memory://", "--rate-limit-storage", uri])
        assert code == 2 and err.count("\n") == 1, err
        assert "authentication failed" in err and ":***@" in err and "wrong" not in err
    finally:
        redis.Redis.from_url(redis_server.url, password="right").config_set("requirepass", "")


# --- connections -----------------------------------------------------------------------


def read_all(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed."""
    sock.settimeout(timeout)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received, time.monotonic()


def one_event_request() -> bytes:
    body = b'{"n":1}'
    head = f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def test_a_request_whose_headers_never_complete_is_closed_within_the_header_timeout():
    server = Server(["--sink", "memory://", "--token", TOKEN, "--api-key", KEY, "--header-timeout", "0.5"])
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as stalled:
            started = time.monotonic()
            stalled.sendall(b"POST / HT")  # half a request line, then nothing
            received, closed = read_all(stalled, timeout=5)
        assert received.startswith(b"HTTP/1.1 408 ")
        assert 0.4 < closed - started < 2.5
        with socket.create_connection(("127.0.0.1", server.port)) as silent:  # not a byte sent
            started = time.monotonic()
            _, closed = read_all(silent, timeout=5)
        assert closed - started < 2.5
        with socket.create_connection(("127.0.0.1", server.port)) as trickling:
            trickling.sendall(one_event_request())  # a request answered, then bytes that start no next one
            trickling.settimeout(5)
            assert trickling.recv(65536).startswith(b"HTTP/1.1 202 ")
            started = time.monotonic()
            with pytest.raises(OSError):  # the server closes: a reset, or a broken pipe
                for _ in range(25):  # 5 s at most
                    trickling.sendall(b"\r\n")
                    time.sleep(0.2)
                    trickling.setblocking(False)
                    try:
                        if trickling.recv(1024) == b"":
                            raise ConnectionResetError("closed by the server")
                    except BlockingIOError:
                        pass
                    trickling.setblocking(True)
        assert time.monotonic() - started < 2.5
        # A polite client on a kept-alive connection is not hurried.
        with socket.create_connection(("127.0.0.1", server.port)) as polite:
            for _ in range(2):
                polite.sendall(one_event_request())
                polite.settimeout(5)
                assert polite.recv(65536).startswith(b"HTTP/1.1 202 ")
                time.sleep(0.3)
    finally:
        code, err = server.stop()
    assert code == 0
    assert "did not complete its request headers within 0.5s" in err


def test_connections_over_the_cap_are_refused_at_once_and_the_refusals_are_rate_limited():
    server = Server(["--sink", "memory://", "--token", TOKEN, "--api-key", KEY, "--max-connections", "3"])
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
    try:
        time.sleep(0.2)
        for _ in range(30):
            with socket.create_connection(("127.0.0.1", server.port)) as extra:
                started = time.monotonic()
                received, closed = read_all(extra, timeout=5)
                assert received.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in received.lower()
                assert closed - started < 1
        held.pop().close()
        time.sleep(0.2)
        assert post(server.url, b"{}", bearer()) == 202
    finally:
        for sock in held:
            sock.close()
        code, err = server.stop()
    assert code == 0
    refusals = [line for line in err.splitlines() if "connection refused" in line]
    assert 1 <= len(refusals) <= 5, err


def test_a_connection_over_the_cap_that_sent_its_request_reads_the_503_and_a_clean_close():
    # Closing a socket that holds unread bytes sends a reset, which can make the
    # client's system drop the 503 before it is read: the refused connection is
    # shut for writing after the answer, and what the client sends is read and
    # dropped until it closes (or for at most a moment).
    server = Server(["--sink", "memory://", "--token", TOKEN, "--api-key", KEY, "--max-connections", "1"])
    held = socket.create_connection(("127.0.0.1", server.port))
    try:
        time.sleep(0.2)
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", server.port)) as extra:
                extra.sendall(one_event_request() * 20)  # the whole request at once, before reading
                time.sleep(0.2)  # the refusal is written and the connection shut meanwhile
                received, _ = read_all(extra, timeout=5)  # no ConnectionResetError
                assert received.startswith(b"HTTP/1.1 503 ") and received.endswith(b"too many open connections")
    finally:
        held.close()
        code, err = server.stop()
    assert code == 0


def test_warnings_about_bad_requests_are_rate_limited():
    server = Server(["--sink", "memory://", "--token", TOKEN, "--api-key", KEY])
    try:
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", server.port)) as garbage:
                garbage.sendall(b"\x16\x03\x01 not HTTP at all\r\n\r\n")
                assert read_all(garbage, timeout=5)[0].startswith(b"HTTP/1.1 400 ")
    finally:
        code, err = server.stop()
    assert code == 0
    assert 1 <= err.count("Invalid HTTP request received.") <= 5, err


# --- shutdown ----------------------------------------------------------------------------


def test_sigterm_with_a_client_stalled_mid_body_exits_0_within_the_graceful_timeout(tmp_path):
    db = tmp_path / "t.db"
    server = Server(["--sink", f"sqlite:///{db}", "--token", TOKEN, "--api-key", KEY, "--graceful-timeout", "1"])
    acknowledged = [n for n in range(20) if post(server.url, orjson.dumps({"n": n}), bearer()) == 202]
    stalled = socket.create_connection(("127.0.0.1", server.port))
    try:
        stalled.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode()
            + b'\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{"n":'
        )
        time.sleep(0.3)
        started = time.monotonic()
        code, err = server.stop(timeout=10)
        took = time.monotonic() - started
    finally:
        stalled.close()
    assert code == 0, err
    assert took < 3, f"took {took:.1f}s"
    assert "Traceback" not in err
    assert stored_numbers(db) == acknowledged == list(range(20))


# --- logs ----------------------------------------------------------------------------------


def test_json_access_log_lines_parse_and_hold_no_token_or_query_string():
    server = Server(
        [
            "--workers",
            "2",
            "--sink",
            "memory://",
            "--token",
            TOKEN,
            "--api-key",
            KEY,
            "--log-format",
            "json",
            "--access-log",
        ],
        log_level="info",
    )
    try:
        assert post(server.url + "/?token=" + TOKEN + "&q=private", b"{}", bearer()) == 202
        assert post(server.url + "/v1/logs?x-api-key=" + KEY, b"[{}]", {"x-api-key": KEY, **JSON}) == 202
        assert post(server.url, b"{}", bearer("wrong-token")) == 403
        server.wait_for_line('"status":403')
    finally:
        code, err = server.stop()
    assert code == 0
    lines = [json.loads(line) for line in err.splitlines()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    requests = [line for line in lines if line["logger"] == "ingest_mw.access"]
    assert [line["status"] for line in requests] == [202, 202, 403]
    for text in (TOKEN, KEY, "wrong-token", "private", "?"):
        assert text not in err.replace('"?"', ""), text


def test_the_access_log_is_off_by_default():
    server = Server(["--sink", "memory://", "--token", TOKEN, "--api-key", KEY], log_level="info")
    try:
        assert post(server.url, b"{}", bearer()) == 202
        server.wait_for_line("routes:")
    finally:
        code, err = server.stop()
    assert "POST / 202" not in err and "ingest_mw.access" not in err
    for expected in ("routes: POST /", "sink: memory://", "1 worker", "(--token)"):
        assert expected in err, expected


HOST_APP = """
from ingest_mw.asgi import ASGIMiddleware
from ingest_mw.betterstack import BetterStackAPI
from ingest_mw.sinks import SQLiteSink


async def host(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    await send({"type": "http.response.body", "body": b"host"})


app = ASGIMiddleware(host, BetterStackAPI({"web": "host-token"}), sink=SQLiteSink(DB), prefix="/ingest")
"""


def test_a_host_on_uvicorn_gets_the_header_timeout_from_the_guarded_protocol(tmp_path):
    db = tmp_path / "host.db"
    (tmp_path / "hostapp.py").write_text(f"DB = {str(db)!r}\n" + HOST_APP)
    port = free_port()
    process = guarded_uvicorn("hostapp:app", tmp_path, port, {"INGEST_MW_HEADER_TIMEOUT": "0.5"})
    try:
        url = f"http://127.0.0.1:{port}"
        assert post(url + "/ingest/", b'{"n":7}', bearer("host-token")) == 202
        with socket.create_connection(("127.0.0.1", port)) as stalled:
            started = time.monotonic()
            stalled.sendall(b"POST /ingest/ HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            received, closed = read_all(stalled, timeout=5)
        assert received.startswith(b"HTTP/1.1 408 ") and closed - started < 2.5
    finally:
        process.terminate()
        process.communicate(timeout=15)
    assert stored_numbers(db) == [7]


# --- health, metrics, the core's limits as flags -----------------------------------------------


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def metric(text: bytes, name: str, api: str = "betterstack") -> float:
    """The value of ``name{api="..."}`` in a Prometheus text exposition (0 when absent)."""
    for line in text.decode().splitlines():
        if line.startswith(f'{name}{{api="{api}"}} '):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_health_readiness_and_metrics_that_move_by_exactly_the_events_sent(tmp_path, workers):
    db = tmp_path / "m.db"
    server = Server(
        ["--workers", workers, "--sink", f"sqlite:///{db}", "--token", TOKEN, "--api-key", KEY, "--rate-limit", "none"]
    )
    try:
        assert get(server.url + "/healthz") == (200, b"ok\n")
        assert get(server.url + "/readyz")[0] == 200
        status, before = get(server.url + "/metrics")
        assert status == 200
        sent = 0
        for size in (1, 5, 20, 3, 7, 11):  # over both workers' connections
            assert post(server.url, orjson.dumps([{"n": i} for i in range(size)]), bearer()) == 202
            sent += size
        accepted = "ingest_mw_events_accepted_total"
        # Under --workers, another worker's counts reach the scrape within a second or so.
        deadline = time.monotonic() + 10
        while (moved := metric(get(server.url + "/metrics")[1], accepted) - metric(before, accepted)) < sent:
            assert time.monotonic() < deadline, f"{moved} of {sent} events counted"
            time.sleep(0.2)
        time.sleep(1.5)  # and no more than that, once every worker has written its counts
        assert metric(get(server.url + "/metrics")[1], accepted) - metric(before, accepted) == sent
        assert get(server.url + "/healthz?x=1")[0] == 200, "an exact path, whatever the query"
    finally:
        code, err = server.stop()
    assert code == 0, err
    assert len(stored_numbers(db)) == sent


def test_no_metrics_turns_the_route_off_and_readyz_says_503_while_draining():
    server = Server(
        ["--sink", "memory://", "--token", TOKEN, "--api-key", KEY, "--no-metrics", "--drain-delay", "1.5"],
        log_level="info",
    )
    try:
        assert "GET /metrics" not in server.wait_for_line("routes:")
        assert get(server.url + "/metrics")[0] == 404  # no route there without metrics
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert get(server.url + "/readyz") == (503, b"not ready: draining\n")
        assert post(server.url, b"{}", bearer()) == 202, "still serving while the load balancer notices"
    finally:
        code, err = server.stop(timeout=10)
    assert code == 0, err


def test_the_cores_limits_are_serve_options():
    server = Server(
        ["--sink", "memory://", "--token", TOKEN, "--api-key", KEY, "--body-idle-timeout", "0.5"],
        env={"INGEST_MW_MAX_EVENTS": "3"},
    )
    try:
        request = urllib.request.Request(server.url, orjson.dumps([{}] * 4), bearer(), method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 413 and b"at most 3 events" in refused.value.read()
        with socket.create_connection(("127.0.0.1", server.port)) as stalled:
            head = f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            stalled.sendall(head.encode() + b"Content-Length: 100\r\n\r\n[{")
            started = time.monotonic()
            received, closed = read_all(stalled, timeout=5)
        assert received.startswith(b"HTTP/1.1 408 ") and closed - started < 2.5
    finally:
        server.stop()


def test_a_disk_short_of_min_free_bytes_starts_with_a_warning_fails_readiness_and_still_stores(tmp_path):
    # The real disk of the test's directory, asked for more room than it has
    # (--min-free-bytes): serve starts, says why it is not ready, answers
    # /readyz 503, and stores what it is sent; 0 does not ask.
    db = tmp_path / "full.db"
    more_than_free = f"{shutil.disk_usage(tmp_path).free // 2**30 + 1024}GiB"
    args = ["--sink", f"sqlite:///{db}", "--token", TOKEN, "--api-key", KEY]
    server = Server([*args, "--min-free-bytes", more_than_free])
    try:
        line = server.wait_for_line("not ready until it has room")
        assert f"--sink sqlite:///{db}: not ready until it has room: SQLite sink {db}: " in line
        assert "free on its disk, under min_free_bytes" in line
        assert get(server.url + "/readyz") == (503, b"not ready: sink SQLiteSink unavailable\n")
        assert post(server.url, orjson.dumps({"n": 1}), bearer()) == 202
    finally:
        code, err = server.stop()
    assert code == 0, err
    assert stored_numbers(db) == [1]
    unasked = Server([*args, "--min-free-bytes", "0"])
    try:
        assert get(unasked.url + "/readyz")[0] == 200
    finally:
        code, err = unasked.stop()
    assert code == 0 and "not ready" not in err, err
