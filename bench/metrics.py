"""What metrics cost: single-event Better Stack requests with the Prometheus observer on and off.

Target (issue 13, item 4): the single-event throughput with metrics on stays
within 5% of metrics off. Two readings:

* **In process** (always): the ASGI app called directly with a prepared
  scope and a storage hook that keeps nothing, so that only our own code is
  timed: the flow alone (``observer=None``), the flow with
  :class:`~ingest_mw.metrics.PrometheusObserver`, that app with the
  ``/healthz`` ``/readyz`` ``/metrics`` endpoints as ``serve`` runs them, and
  with the endpoints in a middleware in front instead, as a host may.
  Rounds of each alternate; the table gives each one's median microseconds
  per request and what metrics add.
* **Over HTTP** (when ``wrk`` is installed; ``--no-http`` to skip): two
  servers on ``serve``'s own stack (:func:`ingest_mw.serve.run.run_app`), one
  with metrics off, one with the observer and the endpoints as ``serve``
  runs them (``ASGIApp(observer=..., endpoints=...)``), run
  side by side (each under its own wrk at the same time, both servers on one
  CPU and the wrks on the other, as ``bench/http.py`` does, because this
  machine's speed drifts from second to second); the ratio of each round is
  on/off, and the table gives their median and range.

Run from the repository root::

    python3 bench/metrics.py                    # about 2 minutes
    python3 bench/metrics.py --rounds 9 --duration 10
    python3 bench/metrics.py --no-http
"""

from __future__ import annotations

import sys
from pathlib import Path

# The bench folder holds an http.py that would shadow the standard library's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import gc
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

TOKEN = "bench-token"
BODY = b'{"message": "hello from the bench", "level": "info", "dt": "2024-01-01T00:00:00Z"}'
HEADERS = [
    (b"host", b"127.0.0.1"),
    (b"authorization", f"Bearer {TOKEN}".encode()),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]
from ingest_mw.serve import GC_THRESHOLD  # noqa: E402  # as serve sets it


async def drop(batch: object) -> None:
    """A storage hook that keeps nothing: the sink's cost is not what is measured."""


def build(kind: str) -> Any:
    """The ASGI app of one kind: ``off``, ``on`` (the observer), ``served`` (the
    observer and the ``/healthz`` ``/readyz`` ``/metrics`` endpoints, as ``serve``
    runs them) or ``wrapped`` (the same endpoints in a middleware in front, as a
    host might mount them)."""
    from ingest_mw import ASGIApp, BetterStackAPI
    from ingest_mw.endpoints import EndpointsASGIMiddleware
    from ingest_mw.health import Health, health_asgi_endpoints
    from ingest_mw.metrics import PrometheusObserver, metrics_asgi_app
    from ingest_mw.observe import Observer

    api = BetterStackAPI([TOKEN], rate_limit=None)  # bench/http.py's setting: the minimal app has no limiter
    if kind == "off":
        return ASGIApp(api, sink=drop)
    if kind == "null":
        return ASGIApp(api, sink=drop, observer=Observer())
    observer = PrometheusObserver()
    endpoints = {**health_asgi_endpoints(Health()), "/metrics": metrics_asgi_app()}
    if kind == "on":
        return ASGIApp(api, sink=drop, observer=observer)
    if kind == "served":
        return ASGIApp(api, sink=drop, observer=observer, endpoints=endpoints)
    return EndpointsASGIMiddleware(ASGIApp(api, sink=drop, observer=observer), endpoints)


# --- in process -------------------------------------------------------------------------
def per_request_us(app: Any, requests: int) -> float:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "root_path": "",
        "headers": HEADERS,
        "client": ("127.0.0.1", 50000),
        "query_string": b"",
    }
    message = {"type": "http.request", "body": BODY, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 202:
            raise SystemExit(f"the app answered {message['status']}")

    async def run() -> float:
        started = time.perf_counter()
        for _ in range(requests):
            await app(scope, receive, send)
        return (time.perf_counter() - started) / requests * 1e6

    return asyncio.run(run())


def in_process(rounds: int, requests: int) -> None:
    apps = {kind: build(kind) for kind in ("off", "on", "served", "wrapped")}
    times: dict[str, list[float]] = {kind: [] for kind in apps}
    for app in apps.values():
        per_request_us(app, requests // 10)  # warm-up
    for index in range(rounds):
        order = list(apps) if index % 2 == 0 else list(reversed(apps))
        for kind in order:
            times[kind].append(per_request_us(apps[kind], requests))
    off = statistics.median(times["off"])
    print(f"in process, {rounds} rounds of {requests:,} single-event requests (median, microseconds per request)")
    labels = {
        "off": "metrics off",
        "on": "observer on",
        "served": "observer, endpoints",
        "wrapped": "endpoints wrapper",
    }
    for kind, label in labels.items():
        median = statistics.median(times[kind])
        extra = "" if kind == "off" else f"   +{median - off:.2f} us ({(median - off) / off:+.1%} of the flow)"
        print(f"  {label:<22} {median:7.2f} us   range {min(times[kind]):.2f}-{max(times[kind]):.2f}{extra}")


# --- over HTTP --------------------------------------------------------------------------
def serve(kind: str, port: int) -> None:
    from ingest_mw.serve.run import run_app

    gc.set_threshold(GC_THRESHOLD, 20, 20)
    run_app(build(kind), port=port)  # serve's own stack: its protocol and config


LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/json"
"""


def pinned(cpu: int | None) -> Callable[[], None] | None:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("a server did not start listening")


def wrk(script: Path, port: int, duration: int, connections: int, cpu: int | None) -> subprocess.Popen[str]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(script)]
    return subprocess.Popen(
        [*command, f"http://127.0.0.1:{port}/"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=pinned(cpu),
    )


def requests_per_second(run: subprocess.Popen[str], duration: int) -> float:
    try:
        text, _ = run.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        run.kill()
        raise SystemExit("wrk did not finish in time") from None
    found = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if run.returncode != 0 or found is None:
        raise SystemExit(f"wrk failed:\n{text}")
    if "Non-2xx" in text:
        raise SystemExit(f"the server answered other than 202:\n{text}")
    return float(found.group(1))


def over_http(rounds: int, duration: int, warmup: int, connections: int, pin: bool, against: str) -> None:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_cpu, wrk_cpu = (cpus[0], cpus[1]) if pin and len(cpus) >= 2 else (None, None)
    # Servers by label: the same kind twice (--against off) must be two servers.
    other = against if against != "off" else "off, again"
    kind_of = {"off": "off", other: against}
    ratios: list[float] = []
    rates: dict[str, list[float]] = {"off": [], other: []}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(LUA.format(body='"' + BODY.decode().replace('"', '\\"') + '"', token=TOKEN))
        for index in range(rounds):
            labels = ["off", other] if index % 2 == 0 else [other, "off"]
            ports = dict(zip(labels, free_ports(len(labels))))
            servers: dict[str, subprocess.Popen[bytes]] = {}
            try:
                for label in labels:
                    servers[label] = subprocess.Popen(
                        [sys.executable, __file__, "--serve", kind_of[label], "--port", str(ports[label])],
                        preexec_fn=pinned(server_cpu),
                    )
                for label, proc in servers.items():
                    wait_ready(proc, ports[label])
                warm = [wrk(script, ports[label], warmup, connections, wrk_cpu) for label in labels]
                for run in warm:
                    requests_per_second(run, warmup)
                runs = {label: wrk(script, ports[label], duration, connections, wrk_cpu) for label in labels}
                got = {label: requests_per_second(run, duration) for label, run in runs.items()}
            finally:
                for proc in servers.values():
                    proc.terminate()
                for proc in servers.values():
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            for label, rate in got.items():
                rates[label].append(rate)
            ratios.append(got[other] / got["off"])
            print(
                f"  round {index + 1}: off {got['off']:,.0f} req/s, {other} {got[other]:,.0f} req/s, {ratios[-1]:.3f}"
            )
    print(
        f"over HTTP (serve's stack, side by side, {duration} s per round):"
        f" off {statistics.median(rates['off']):,.0f} req/s, {other} {statistics.median(rates[other]):,.0f} req/s,"
        f" ratio {statistics.median(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per in-process round")
    parser.add_argument("--duration", type=int, default=8, help="seconds per HTTP round")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per HTTP round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-http", action="store_true", help="only the in-process reading")
    parser.add_argument("--no-pin", action="store_true", help="let the OS place the servers and wrk")
    kinds = ("off", "null", "on", "served", "wrapped")
    parser.add_argument(
        "--against",
        choices=kinds,
        default="served",
        help="the server measured beside metrics off over HTTP (default: %(default)s, as serve runs it;"
        " null: an observer that does nothing; off: the bench against itself)",
    )
    parser.add_argument("--serve", choices=kinds, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    # One process's metrics: the multiprocess mode (files) is not what this measures.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    in_process(args.rounds, args.requests)
    if args.no_http:
        return 0
    if shutil.which("wrk") is None:
        print("over HTTP: skipped (wrk is not installed: apt-get install wrk)")
        return 0
    over_http(args.rounds, args.duration, args.warmup, args.connections, not args.no_pin, args.against)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
