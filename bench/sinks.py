"""Events/s of ``ingest-mw serve`` into each storing sink, beside a plain loop storing the same rows.

Issue 15: through ``serve``, 1000-event Better Stack arrays should be stored at

* SQLite: at least 0.8 of a plain Python loop that ``executemany``\\ s the same
  rows into the same WAL table, one transaction per 1000 rows;
* PostgreSQL: at least 0.7 of a plain psycopg ``COPY`` (``write_row`` per
  row) of the same rows, one transaction per 1000;
* Redis Streams: at least 0.7 of a plain redis-py pipeline of ``XADD``\\ s of
  the same entries, one ``execute`` per 1000.

The floor loops run in this process with the rows built beforehand (they
pay for storing only); ``serve`` pays for everything (HTTP, decoding, the
events' times, the rows). ``serve`` runs with ``--rate-limit none`` under
``wrk`` (one thread, ``--connections`` connections). Each round measures the
floor and ``serve`` for ``--seconds``, side by side (the floor loop in a
forked process while ``wrk`` loads ``serve``: on a shared machine whose speed
drifts by a factor of several within seconds, only figures taken at the same
moment compare; ``--sequential`` takes them one after the other), after a
warm-up; the ratio is the middle of the rounds' ratios. PostgreSQL and Redis
are real servers started in temporary directories on free loopback ports
(as the tests start them: ``tests/postgres_fixture.py``,
``tests/redis_fixture.py``), so a sink whose server is missing is skipped.
Figures and notes: ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# bench/http.py would shadow the standard library's http package: keep this
# folder off the import path, and import the checkout this file belongs to.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))  # the real-server fixtures

import orjson

from ingest_mw.batch import Batch, Events
from ingest_mw.betterstack import BetterStackAPI
from ingest_mw.sinks.record import COLUMNS, rows

TOKEN = "bench-token"
BATCH = 1000
COLUMN_LIST = ", ".join(COLUMNS)


def _pipeline_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_pipeline", HERE / "pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def floor_rows(events: list[dict[str, Any]]) -> list[tuple[str | None, ...]]:
    """The rows the sinks store for one request of ``events``, built as the SQLite sink's are."""
    now = datetime.now(UTC)
    api = BetterStackAPI({"bench": TOKEN})
    return list(rows(Batch("betterstack", "bench", now, Events(events, api.times, now))))


def stream_added(client: Any, stream: str) -> int:
    """Entries ever added to ``stream`` (its length would shrink as MAXLEN trims it)."""
    if not client.exists(stream):
        return 0
    info = client.xinfo_stream(stream)
    return int(info.get("entries-added", info["length"]))  # entries-added: Redis 7


def run_floor(store: Callable[[], None], seconds: float) -> float:
    """Events/s of ``store`` (one batch of BATCH rows per call) over about ``seconds``."""
    store()  # warm
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        store()
        count += 1
    return count * BATCH / (time.perf_counter() - start)


# --- the floors -----------------------------------------------------------------------------
def sqlite_floor(path: Path, prebuilt: list[tuple[str | None, ...]]) -> Callable[[], None]:
    from ingest_mw.sinks.sqlite import _SCHEMA

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    insert = f"INSERT INTO events ({COLUMN_LIST}) VALUES ({', '.join('?' * len(COLUMNS))})"

    def store() -> None:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(insert, prebuilt)
        db.execute("COMMIT")

    return store


def postgres_floor(url: str, table: str, prebuilt: list[tuple[str | None, ...]]) -> Callable[[], None]:
    import psycopg

    from ingest_mw.sinks.postgres import ddl

    connection = psycopg.connect(url, autocommit=True)
    connection.execute(ddl(table))
    values = [(datetime.fromisoformat(r[0]), datetime.fromisoformat(r[1]), *r[2:]) for r in prebuilt]  # type: ignore[arg-type]

    def store() -> None:
        with connection.transaction(), connection.cursor() as cursor:
            with cursor.copy(f"COPY {table} ({COLUMN_LIST}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)

    return store


def redis_floor(url: str, stream: str, prebuilt: list[tuple[str | None, ...]]) -> Callable[[], None]:
    import redis

    client = redis.Redis.from_url(url)
    entries = [{name: value for name, value in zip(COLUMNS, row) if value is not None} for row in prebuilt]

    def store() -> None:
        pipeline = client.pipeline(transaction=False)
        for fields in entries:
            pipeline.xadd(stream, fields)  # type: ignore[arg-type]
        pipeline.execute()

    return store


# --- serve under wrk ----------------------------------------------------------------------
_LUA = """\
local f = assert(io.open({body}, "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.path = "/"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/json"
"""


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(sink_url: str) -> Iterator[int]:
    port = free_port()
    command = [sys.executable, "-m", "ingest_mw", "serve", "--port", str(port), "--sink", sink_url]
    command += ["--token", f"bench={TOKEN}", "--rate-limit", "none", "--log-level", "warning"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        import socket

        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise SystemExit(f"serve exited: {process.communicate()[1]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("serve did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def run_wrk(port: int, script: Path, seconds: int, connections: int) -> float:
    """Events/s that ``serve`` stored (202s x BATCH) over ``seconds``."""
    import re

    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script)]
    output = subprocess.run([*command, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True)
    text = output.stdout
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if rps is None:
        raise SystemExit(f"could not read wrk's output:\n{text}")
    if re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text) or "Socket errors" in text:
        raise SystemExit(f"serve answered other than 202:\n{text}")
    return float(rps.group(1)) * BATCH


# --- the cases ------------------------------------------------------------------------------
def floor_beside(make_floor: Callable[[], Callable[[], None]], seconds: float) -> Callable[[], float]:
    """Start the floor loop in a forked process for ``seconds``; the returned
    function waits for its events/s."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)

    def child() -> None:
        sender.send(run_floor(make_floor(), seconds))

    process = context.Process(target=child)
    process.start()

    def result() -> float:
        rate = float(receiver.recv())
        process.join()
        return rate

    return result


def measure(
    name: str,
    sink_url: str,
    make_floor: Callable[[], Callable[[], None]],
    args: argparse.Namespace,
    script: Path,
    count_stored: Callable[[], int],
) -> dict[str, Any]:
    results: list[tuple[float, float]] = []
    with serving(sink_url) as port:
        run_wrk(port, script, max(1, args.warmup), args.connections)
        before = count_stored()
        floor = None if args.side_by_side else make_floor()
        for _ in range(args.rounds):
            if floor is None:  # side by side: both at once, so both see the machine as it is now
                waiting = floor_beside(make_floor, args.seconds)
                serve_rate = run_wrk(port, script, args.seconds, args.connections)
                floor_rate = waiting()
            else:
                floor_rate = run_floor(floor, args.seconds)
                serve_rate = run_wrk(port, script, args.seconds, args.connections)
            results.append((serve_rate, floor_rate))
            ratio = serve_rate / floor_rate
            print(f"  {name}: serve {serve_rate:>9,.0f}  floor {floor_rate:>9,.0f}  ratio {ratio:.2f}")
        stored = count_stored() - before
    ratios = sorted(serve / floor for serve, floor in results)
    return {
        "name": name,
        "serve": statistics.median(serve for serve, _ in results),
        "floor": statistics.median(floor for _, floor in results),
        "ratio": statistics.median(ratios),
        "range": (ratios[0], ratios[-1]),
        "stored": stored,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="each measurement (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="serve's warm-up (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="floor/serve pairs per sink (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections (default: %(default)s)")
    parser.add_argument(
        "--sequential",
        dest="side_by_side",
        action="store_false",
        help="measure the floor, then serve (default: side by side, at the same time)",
    )
    parser.add_argument(
        "--dir",
        default=None,
        help="where the SQLite files go (default: a temporary directory; /dev/shm keeps the disk out)",
    )
    parser.add_argument("--only", choices=("sqlite", "postgres", "redis"), action="append", help="repeatable")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("bench/sinks.py needs wrk (apt-get install wrk)")
    chosen = args.only or ["sqlite", "postgres", "redis"]
    events = _pipeline_module().make_events(BATCH)
    prebuilt = floor_rows(events)
    results: list[dict[str, Any]] = []
    targets = {"SQLite": 0.8, "PostgreSQL": 0.7, "Redis Streams": 0.7}
    with tempfile.TemporaryDirectory(prefix="ingest-mw-bench-", dir=args.dir) as tmp, ExitStack() as stack:
        script = Path(tmp) / "body.lua"
        body = Path(tmp) / "body.json"
        body.write_bytes(orjson.dumps(events))
        script.write_text(_LUA.format(body=json.dumps(str(body)), token=TOKEN))
        if "sqlite" in chosen:
            path = Path(tmp) / "serve.db"
            floor_path = Path(tmp) / "floor.db"
            sqlite_floor(floor_path, prebuilt)  # the table made once, before any round

            def floor() -> Callable[[], None]:
                return sqlite_floor(floor_path, prebuilt)

            def sqlite_count() -> int:
                if not path.exists():
                    return 0
                with sqlite3.connect(path) as db:
                    return int(db.execute("SELECT count(*) FROM events").fetchone()[0])

            results.append(measure("SQLite", f"sqlite:///{path}", floor, args, script, sqlite_count))
        if "postgres" in chosen:
            from postgres_fixture import PostgresServer, find_binaries

            bindir = find_binaries()
            if bindir is None:
                print("PostgreSQL: skipped (no initdb/pg_ctl)")
            else:
                server = PostgresServer(bindir)
                stack.callback(server.remove)
                server.start()
                import psycopg

                def pg_count() -> int:
                    with psycopg.connect(server.url) as connection:
                        found = connection.execute("SELECT to_regclass('serve_events')").fetchone()
                        if found is None or found[0] is None:
                            return 0
                        return int(connection.execute("SELECT count(*) FROM serve_events").fetchone()[0])  # type: ignore[index]

                url = server.url

                def pg_floor() -> Callable[[], None]:
                    return postgres_floor(url, "floor_events", prebuilt)

                sink_url = f"{server.url}?table=serve_events"
                results.append(measure("PostgreSQL", sink_url, pg_floor, args, script, pg_count))
        if "redis" in chosen:
            from redis_fixture import RedisServer

            executable = shutil.which("redis-server")
            if executable is None:
                print("Redis Streams: skipped (no redis-server)")
            else:
                redis_server = RedisServer(executable)
                stack.callback(redis_server.stop)
                redis_server.start()
                import redis

                client = redis.Redis.from_url(redis_server.url)
                redis_url = redis_server.url

                def redis_floor_made() -> Callable[[], None]:
                    return redis_floor(redis_url, "floor", prebuilt)

                results.append(
                    measure(
                        "Redis Streams",
                        f"{redis_server.url}?stream=serve&maxlen=200000",
                        redis_floor_made,
                        args,
                        script,
                        lambda: stream_added(client, "serve"),
                    )
                )
    print()
    print("| sink | serve events/s | floor events/s | ratio (middle, range) | target |")
    print("|---|---|---|---|---|")
    for result in results:
        low, high = result["range"]
        target = targets[result["name"]]
        print(
            f"| {result['name']} | {result['serve']:,.0f} | {result['floor']:,.0f} |"
            f" {result['ratio']:.2f} ({low:.2f}-{high:.2f}) | >= {target} |"
        )
        if result["stored"] <= 0:
            raise SystemExit(f"{result['name']}: serve stored nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
