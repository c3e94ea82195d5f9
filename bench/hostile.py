"""Replay issue 14's hostile and unlucky clients against ``ingest-mw serve`` with its defaults.

Not a test: it prints, per row of the issue, what a user would ask of it —
how the well-behaved clients fared meanwhile (success rate, p99 latency), the
server's peak RSS (and where it came down to), bytes read after a refusal,
requests in flight, events acknowledged against events stored. Every row
starts a fresh server (``--sink sqlite:///…`` in a temporary directory) and is
bounded in time; everything is on loopback, each kind of client from its own
127.0.0.x address (the default rate limit counts 500 requests a minute per
IP). Rows 5 and 6 are about ``serve`` itself (shutdown, start-up) and are
measured as they are.

    python3 bench/hostile.py            # every row, about 3 minutes
    python3 bench/hostile.py 2 3 7      # some rows
"""

from __future__ import annotations

import sys
from pathlib import Path

# Off sys.path before anything imports http: bench/http.py would shadow it.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse
import contextlib
import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

TOKEN = "bench-token"
KEY = "bench-key"
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Served:
    """One ``ingest-mw serve`` process with its defaults (and ``extra`` flags)."""

    def __init__(self, workdir: Path, extra: tuple[str, ...] = (), sink: str | None = None) -> None:
        self.port = free_port()
        self.db = workdir / "ingest.db"
        command = [sys.executable, "-m", "ingest_mw", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--sink", sink or f"sqlite:///{self.db}", "--token", f"web={TOKEN}", "--api-key", f"team={KEY}"]
        command += ["--log-level", "warning", *extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.stderr_path = workdir / "stderr.txt"
        self._stderr = self.stderr_path.open("w")
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=self._stderr)
        self.peak_rss = 0
        self._sampling = True
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {self.stderr_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not start")
            time.sleep(0.05)
        self.start_rss = self.rss()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def rss(self) -> int:
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _sample(self) -> None:
        while self._sampling:
            self.peak_rss = max(self.peak_rss, self.rss())
            time.sleep(0.02)

    def stored(self) -> int:
        with contextlib.closing(sqlite3.connect(self.db, timeout=30)) as db:
            return int(db.execute("SELECT count(*) FROM events").fetchone()[0])

    def stop(self) -> str:
        self._sampling = False
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()
        return self.stderr_path.read_text()


def connect(port: int, source: str, timeout: float = 5.0) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))


def post(
    connection: http.client.HTTPConnection, body: bytes, headers: dict[str, str], path: str = "/"
) -> tuple[int, http.client.HTTPResponse]:
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    return response.status, response


BS_JSON = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
BS_MSGPACK = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/msgpack"}


class NormalClients:
    """Well-behaved shippers: ``count`` clients, each from its own address, each
    sending a one-event request every ``interval`` seconds with a 5 s timeout."""

    def __init__(self, port: int, count: int = 4, interval: float = 0.2, first_ip: int = 2) -> None:
        self.port = port
        self.results: list[tuple[int, float]] = []  # (status or 0 for an error, seconds)
        self._running = True
        self._threads = [
            threading.Thread(target=self._run, args=(f"127.0.0.{first_ip + i}", interval), daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, source: str, interval: float) -> None:
        connection = connect(self.port, source)
        n = 0
        while self._running:
            started = time.monotonic()
            try:
                status, response = post(connection, json.dumps({"message": f"normal {n}"}).encode(), BS_JSON)
                if response.getheader("connection") == "close":
                    connection.close()
                    connection = connect(self.port, source)
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = connect(self.port, source)
            elapsed = time.monotonic() - started
            self.results.append((status, elapsed))
            n += 1
            time.sleep(max(0.0, interval - elapsed))

    def stop(self) -> str:
        self._running = False
        for thread in self._threads:
            thread.join(10)
        if not self.results:
            return "no requests"
        ok = sum(1 for status, _ in self.results if status == 202)
        latencies = sorted(elapsed for _, elapsed in self.results)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return f"{ok}/{len(self.results)} ok ({100 * ok / len(self.results):.0f}%), p99 {p99 * 1000:.0f} ms"


def mb(size: int) -> str:
    return f"{size / MiB:.0f} MiB"


# --- the rows ---------------------------------------------------------------------------
def row1(workdir: Path) -> list[str]:
    """Connections that send half a request line and stall; then ones that
    send their headers and stall mid-body."""
    out = []
    for label, payload, count in (
        ("half a request line", b"POST / HT", 3000),
        (
            "headers, then a stalled body",
            f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[".encode(),
            600,
        ),
    ):
        server = Served(workdir)
        normal = NormalClients(server.port)
        stalled: list[socket.socket] = []
        errors = 0
        started = time.monotonic()
        for i in range(count):  # over about 10 s, from two addresses
            try:
                sock = socket.create_connection(
                    ("127.0.0.1", server.port), timeout=2, source_address=(f"127.0.1.{1 + i % 2}", 0)
                )
                sock.sendall(payload)
                stalled.append(sock)
            except OSError:
                errors += 1
            time.sleep(max(0.0, started + 10 * (i + 1) / count - time.monotonic()))
        time.sleep(2)
        closed = 0
        answered = 0
        for sock in stalled:
            sock.setblocking(False)
            data = b""
            try:
                while chunk := sock.recv(65536):
                    data += chunk
                closed += 1  # the end of the stream: closed by the server
            except BlockingIOError:
                pass  # still open
            except OSError:
                closed += 1
            answered += data.startswith(b"HTTP/1.1 503")
            sock.close()
        figures = normal.stop()
        stderr = server.stop()
        out.append(
            f"{count} x {label} => normal clients {figures}; {closed} of {len(stalled)} closed by the server"
            f" after 2 s ({answered} with a 503 first); {errors} connect errors; stderr {len(stderr)} bytes"
        )
    return out


def worst_bodies() -> list[tuple[str, bytes, dict[str, str]]]:
    maps_2m = b"\xdd" + (2 * MiB).to_bytes(4, "big") + b"\x80" * (2 * MiB)
    nested_maps = b"\x91\x81\xa1a\xdd" + (19 * MiB).to_bytes(4, "big") + b"\x80" * (19 * MiB)
    deep = b"[" + b",".join([b'{"a":' * 1000 + b"1" + b"}" * 1000] * 3000) + b"]"
    return [
        (
            "2 KiB gzip -> 2 MiB MessagePack empty maps",
            gzip.compress(maps_2m, 9),
            {**BS_MSGPACK, "Content-Encoding": "gzip"},
        ),
        ("19 MiB MessagePack: one event of empty maps", nested_maps, BS_MSGPACK),
        ("20 MiB JSON [{},{},...]", b"[" + b"{}," * (20 * MiB // 3 - 2) + b"{}]", BS_JSON),
        ("18 MiB JSON, 3000 events 1000 deep", deep, BS_JSON),
    ]


def attack(port: int, source: str, body: bytes, headers: dict[str, str], until: float, answers: list[int]) -> None:
    """Send ``body`` again and again until ``until``, from ``source``."""
    connection = connect(port, source, timeout=60)
    while time.monotonic() < until:
        try:
            status, response = post(connection, body, headers)
            answers.append(status)
            if response.getheader("connection") == "close":
                connection.close()
                connection = connect(port, source, timeout=60)
        except (OSError, http.client.HTTPException):
            answers.append(0)
            connection.close()
            connection = connect(port, source, timeout=60)


def row2(workdir: Path) -> list[str]:
    out = []
    for label, body, headers in worst_bodies():
        server = Served(workdir)
        normal = NormalClients(server.port)
        answers: list[int] = []
        until = time.monotonic() + 12
        attackers = [
            threading.Thread(target=attack, args=(server.port, f"127.0.2.{i + 1}", body, headers, until, answers))
            for i in range(2)
        ]
        for thread in attackers:
            thread.start()
        for thread in attackers:
            thread.join(90)
        figures = normal.stop()
        server.stop()
        statuses = ", ".join(f"{answers.count(s)} x {s or 'error'}" for s in sorted(set(answers)))
        out.append(
            f"{label} ({len(body):,} bytes), 2 senders for 12 s => answers {statuses};"
            f" normal clients {figures}; peak RSS {mb(server.peak_rss)}"
        )
    return out


def row3(workdir: Path) -> list[str]:
    event = {"message": "x" * 1900, "level": "info"}
    body = json.dumps([event] * 10_000).encode()  # 10,000 events (the cap), 19 MiB
    server = Served(workdir)
    normal = NormalClients(server.port)

    head = (
        f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    def send(i: int) -> tuple[int, int]:
        # Reading the answer while sending, as curl does: a 503 comes before
        # the body is read, and the server then closes.
        status = answer_while_sending(server.port, f"127.0.3.{1 + i}", head + body)
        return status, 10_000

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(send, range(32)))
    peak = server.peak_rss
    time.sleep(5)
    after = server.rss()
    figures = normal.stop()
    acknowledged = sum(events for status, events in answers if status == 202) + sum(
        1 for status, _ in normal.results if status == 202
    )
    stored = server.stored()
    server.stop()
    statuses = ", ".join(
        f"{[s for s, _ in answers].count(s)} x {s or 'error'}" for s in sorted({s for s, _ in answers})
    )
    return [
        f"32 x {len(body) / MiB:.1f} MiB JSON at once => {statuses}; peak RSS {mb(peak)} (from {mb(server.start_rss)}),"
        f" {mb(after)} 5 s later; acknowledged {acknowledged:,} events, stored {stored:,}; normal clients {figures}"
    ]


def answer_while_sending(port: int, source: str, request: bytes) -> int:
    """Send ``request`` on a new connection while reading the answer; its status (0: none)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=120, source_address=(source, 0))
    answer = bytearray()

    def read() -> None:
        with contextlib.suppress(OSError):
            while (data := sock.recv(65536)) and b"\r\n\r\n" not in answer:
                answer.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with contextlib.suppress(OSError):
        sock.sendall(request)
    reader.join(120)
    sock.close()
    try:
        return int(answer.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def refused_after(port: int, head: bytes, chunk: bytes | None, up_to: int) -> tuple[str, int, float]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=("127.0.4.1", 0))
    answer = bytearray()

    def read() -> None:
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                answer.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = time.monotonic()
    sock.sendall(head)
    sent = 0
    if chunk is not None:
        framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        with contextlib.suppress(OSError):
            while sent < up_to:
                sock.sendall(framed)
                sent += len(chunk)
    reader.join(30)
    elapsed = time.monotonic() - started
    sock.close()
    status = answer.split(b"\r\n", 1)[0].decode("latin-1", "replace") if answer else "no answer"
    closes = b"connection: close" in answer.lower()
    return f"{status}{' + close' if closes else ''}", sent, elapsed


def row4(workdir: Path) -> list[str]:
    server = Served(workdir)
    head = "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    out = []
    for label, request, chunk in (
        (
            "4 GiB chunked, good token",
            f"{head}Authorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n",
            True,
        ),
        ("4 GiB chunked, wrong token", f"{head}Authorization: Bearer nope\r\nTransfer-Encoding: chunked\r\n\r\n", True),
        (
            "Content-Length: 10 GiB",
            f"{head}Authorization: Bearer {TOKEN}\r\nContent-Length: {10 * 1024 * MiB}\r\n\r\n",
            False,
        ),
    ):
        cpu_before = cpu_seconds(server.process.pid)
        status, sent, elapsed = refused_after(
            server.port, request.encode(), b"[" + b" " * (MiB - 1) if chunk else None, 4096 * MiB
        )
        cpu = cpu_seconds(server.process.pid) - cpu_before
        out.append(
            f"{label} => {status}; {mb(sent)} sent before the server closed; {elapsed:.2f} s; server CPU {cpu:.2f} s"
        )
    server.stop()
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def row5(workdir: Path) -> list[str]:
    server = Served(workdir)
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(
        f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n[".encode()
    )
    time.sleep(0.5)
    started = time.monotonic()
    server.process.terminate()
    try:
        code = server.process.wait(40)
        result = f"exited {code} after {time.monotonic() - started:.1f} s"
    except subprocess.TimeoutExpired:
        result = "still running after 40 s"
    sock.close()
    server.stop()
    return [f"SIGTERM with one client stalled mid-body => {result}"]


def row6(workdir: Path) -> list[str]:
    readonly = workdir / "ro"
    readonly.mkdir()
    (readonly / "ingest.db-wal").write_bytes(b"")
    readonly.chmod(0o555)
    out = []
    try:
        command = [
            sys.executable,
            "-m",
            "ingest_mw",
            "serve",
            "--port",
            str(free_port()),
            "--sink",
            f"sqlite:///{readonly / 'ingest.db'}",
            "--token",
            TOKEN,
            "--api-key",
            KEY,
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=8)
            last = (done.stderr.strip().splitlines() or [""])[-1][:120]
            out.append(
                f"read-only directory (root ignores permissions: run as a user) => exit {done.returncode}: {last}"
            )
        except subprocess.TimeoutExpired:
            out.append("read-only directory => started (still running after 8 s)")
    finally:
        readonly.chmod(0o755)
    return out


def row7(workdir: Path) -> list[str]:
    server = Served(workdir)
    with contextlib.closing(connect(server.port, "127.0.5.1")) as connection:
        post(connection, b'{"message":"table"}', BS_JSON)
    locker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3,sys,time\ndb=sqlite3.connect(sys.argv[1],isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE');print('locked',flush=True)\ntime.sleep(10);db.execute('COMMIT')",
            str(server.db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout is not None and locker.stdout.readline() == "locked\n"
    answers: list[tuple[int, float]] = []
    in_flight = 0
    in_flight_peak = 0
    lock = threading.Lock()

    def one(n: int) -> None:
        nonlocal in_flight, in_flight_peak
        with lock:
            in_flight += 1
            in_flight_peak = max(in_flight_peak, in_flight)
        started = time.monotonic()
        connection = connect(server.port, f"127.0.6.{1 + n % 20}", timeout=5)
        try:
            status = post(connection, json.dumps({"message": f"m{n}"}).encode(), BS_JSON)[0]
        except (OSError, http.client.HTTPException):
            status = 0  # the client gave up (5 s)
        finally:
            connection.close()
            with lock:
                in_flight -= 1
        answers.append((status, time.monotonic() - started))

    with ThreadPoolExecutor(600) as pool:  # 100 requests a second for 12 s
        started = time.monotonic()
        for n in range(1200):
            pool.submit(one, n)
            time.sleep(max(0.0, started + (n + 1) / 100 - time.monotonic()))
    locker.wait(30)
    time.sleep(1)
    stored = server.stored() - 1
    server.stop()
    statuses = [s for s, _ in answers]
    refused = sorted(elapsed for status, elapsed in answers if status == 503)
    summary = ", ".join(f"{statuses.count(s)} x {s or 'gave up'}" for s in sorted(set(statuses)))
    return [
        f"10 s lock, 100 req/s, 5 s client timeout => {summary}; client-side in flight at most {in_flight_peak};"
        f" slowest 503 after {refused[-1] if refused else 0:.1f} s; acknowledged {statuses.count(202)}, stored {stored}"
    ]


@contextlib.contextmanager
def redis(password: str | None = None) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if password:
        command += ["--requirepass", password]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        yield process, port
    finally:
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait()


def row8(workdir: Path) -> list[str]:
    if shutil.which("redis-server") is None:
        return ["skipped: redis-server is not installed"]
    out = []
    with redis("right") as (_, port):
        try:
            server = Served(workdir, ("--rate-limit-storage", f"redis://:wrong@127.0.0.1:{port}/0"))
        except RuntimeError as error:
            out.append(f"wrong Redis password => serve refused to start: {str(error)[-120:]}")
        else:
            normal = NormalClients(server.port)
            time.sleep(3)
            figures = normal.stop()
            stderr = server.stop()
            out.append(f"wrong Redis password => started; normal clients {figures}; stderr: {stderr.strip()[-100:]!r}")
    with redis() as (process, port):
        server = Served(workdir, ("--rate-limit-storage", f"redis://127.0.0.1:{port}/0"))
        normal = NormalClients(server.port)
        time.sleep(1)
        process.send_signal(signal.SIGSTOP)
        time.sleep(12)
        process.send_signal(signal.SIGCONT)
        time.sleep(1)
        figures = normal.stop()
        slowest = max(elapsed for _, elapsed in normal.results)
        server.stop()
        out.append(f"Redis frozen (SIGSTOP) for 12 s => normal clients {figures}, slowest {slowest:.2f} s")
    return out


ROWS: dict[int, Callable[[Path], list[str]]] = {1: row1, 2: row2, 3: row3, 4: row4, 5: row5, 6: row6, 7: row7, 8: row8}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="*", type=int, default=list(ROWS), help="rows of issue 14 to replay")
    args = parser.parse_args()
    print("| # | what was done | what happened |")
    print("|---|---|---|")
    for number in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.monotonic()
            try:
                lines = ROWS[number](Path(tmp))
            except Exception as error:  # a row that breaks still lets the others run
                lines = [f"failed: {error!r}"]
            for line in lines:
                what, _, happened = line.partition(" => ")
                print(f"| {number} | {what} | {happened} |", flush=True)
            print(f"<!-- row {number}: {time.monotonic() - started:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
