"""Requests/s of ``ingest-mw serve`` with the Live Tail page open and streaming, beside it closed.

Issue 18: reading stays out of the ingest path, so a server with a page
open should ingest within 5 % of one without. Each round starts two
``ingest-mw serve`` processes with the same flags (both with ``--ui-token``,
each its own sink: a fresh SQLite file, or ``memory://``) and puts both
under ``wrk`` side by side, as ``bench/http.py`` does (see its docstring:
this machine's speed drifts, side by side both servers see the same). One of
them has a page open: a client process that does what the page does while
it is live (one server-sent event stream with no filter, reading every
event, and the chart's ``/ui/api/rate`` every 5 seconds). The ratio is
open / closed, per round; the table gives its median and range, and the
median ratio of each server's own CPU time per request (open / closed: what
the page costs each ingest request, steadier than requests/s on a shared
machine). Run from
the repository root::

    python3 bench/ui_stream.py                        # about 2 minutes
    python3 bench/ui_stream.py --sink sqlite --rounds 5 --duration 5

Every server and client is stopped at the end of its round.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py is named like the standard library's package: keep this
# folder off the import path (as bench/http.py does) before importing it.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse
import http.client
import importlib.util
import json
import os
import signal
import subprocess
import tempfile
import time

ROOT = HERE.parent
_spec = importlib.util.spec_from_file_location("bench_http", HERE / "http.py")
assert _spec is not None and _spec.loader is not None
bench_http = importlib.util.module_from_spec(_spec)
sys.modules["bench_http"] = bench_http  # its dataclasses look their module up
_spec.loader.exec_module(bench_http)

TOKEN = "bench-token"
UI_TOKEN = "bench-ui-token"
#: The page asks for the chart this often while events arrive (app.js).
CHART_EVERY = 5.0


class PageClient:
    """An open page: reads the stream and refreshes the chart, counting the events streamed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {UI_TOKEN}"}
        self.streamed = 0

    def _stream(self, after: int | None = None) -> http.client.HTTPResponse:
        stream = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        stream.request("GET", "/ui/api/stream" + ("" if after is None else f"?after={after}"), headers=self.headers)
        response = stream.getresponse()
        assert response.status == 200, response.status
        return response

    def run(self, seconds: float) -> None:
        response = self._stream()
        print("open", flush=True)
        chart = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        deadline = time.monotonic() + seconds
        next_chart = time.monotonic() + CHART_EVERY
        while time.monotonic() < deadline:
            line = response.readline()
            if line.startswith(b"event: end"):  # the server ends a stream every STREAM_SECONDS
                response = self._stream(after=int(response.readline()[6:]))
            elif line.startswith(b"data: "):
                self.streamed += len(json.loads(line[6:])["events"])
            if time.monotonic() >= next_chart:
                chart.request("GET", "/ui/api/rate?by=source", headers=self.headers)
                chart.getresponse().read()
                next_chart += CHART_EVERY


def page_client(port: int, seconds: float) -> None:
    """Be an open page for ``seconds`` or until SIGTERM; print the events streamed."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    client = PageClient(port)
    try:
        client.run(seconds)
    finally:
        print(f"events {client.streamed}", flush=True)


def start_server(port: int, sink: str, directory: Path) -> subprocess.Popen[bytes]:
    url = "memory://" if sink == "memory" else f"sqlite:///{directory / f'ingest-{port}.db'}"
    command = [
        sys.executable,
        "-m",
        "ingest_mw",
        "serve",
        "--port",
        str(port),
        "--sink",
        url,
        "--token",
        TOKEN,
        "--api-key",
        "bench-key",
        "--ui-token",
        UI_TOKEN,
        "--rate-limit",
        "none",
        "--log-level",
        "warning",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    bench_http.wait_ready(proc, port)
    return proc


def cases() -> list[object]:
    event = {"dt": "2026-01-01T00:00:00Z", "level": "info", "message": "GET /api/orders 200", "request_id": "a1b2"}
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    return [
        bench_http.Case("1 event", "/", headers, json.dumps(event).encode(), 1),
        bench_http.Case("100 events", "/", headers, json.dumps([event] * 100).encode(), 100),
    ]


def one_round(
    args: argparse.Namespace, case: object, sink: str, directory: Path, flip: bool
) -> tuple[object, object, int]:
    closed_port, open_port = bench_http.free_ports(2)
    servers = {}
    order = [("open", open_port), ("closed", closed_port)]
    for label, port in reversed(order) if flip else order:
        servers[label] = (start_server(port, sink, directory), port)
    body = directory / "body"
    body.write_bytes(case.body)  # type: ignore[attr-defined]
    script = directory / "case.lua"
    script.write_text(bench_http.lua_script(case, body))
    page = subprocess.Popen(
        [sys.executable, __file__, "--page-client", str(open_port), "--page-seconds", str(args.duration + 20)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert page.stdout is not None and page.stdout.readline().strip() == "open"
        runs = {}
        for label, (proc, port) in servers.items():
            runs[label] = bench_http.WrkRun(args.wrk, script, port, args, args.duration, proc.pid, None)
        results = bench_http.results_of(runs)
        for label, result in results.items():
            if result.bad:
                raise SystemExit(f"{label}: {result.bad} bad answers")
        page.terminate()
        streamed = page.communicate(timeout=10)[0]
        seen = int(streamed.split()[-1]) if "events" in streamed else 0
        return results["open"], results["closed"], seen
    finally:
        if page.poll() is None:
            page.kill()
            page.wait()
        for proc, _ in servers.values():
            bench_http.stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sink", choices=["sqlite", "memory", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds of load per round")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--page-client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--page-seconds", type=float, default=60, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.page_client:
        try:
            page_client(args.page_client, args.page_seconds)
        except KeyboardInterrupt:
            pass
        return 0
    import shutil

    args.wrk = shutil.which("wrk")
    if args.wrk is None:
        raise SystemExit("needs wrk (apt-get install wrk)")
    sinks = ["sqlite", "memory"] if args.sink == "both" else [args.sink]
    print(
        f"{'sink':8} {'case':12} {'closed req/s':>13} {'open req/s':>11} {'open/closed':>12}  range       "
        f" {'CPU/request':>12}  streamed"
    )
    for sink in sinks:
        for case in cases():
            if args.only and args.only not in case.name:  # type: ignore[attr-defined]
                continue
            rounds = []
            with tempfile.TemporaryDirectory() as tmp:
                for index in range(args.rounds):
                    rounds.append(one_round(args, case, sink, Path(tmp), flip=bool(index % 2)))
            opened = [o for o, _, _ in rounds]
            closed = [c for _, c, _ in rounds]
            ratios = bench_http.round_ratios(opened, closed)
            cpu = bench_http.round_ratios(opened, closed, cpu=True)
            streamed = bench_http.middle(sorted(s for _, _, s in rounds))
            print(
                f"{sink:8} {case.name:12} {bench_http.middle(sorted(c.rps for c in closed)):13.0f}"  # type: ignore[attr-defined]
                f" {bench_http.middle(sorted(o.rps for o in opened)):11.0f} {bench_http.middle(ratios):12.3f}"
                f"  {ratios[0]:.3f}-{ratios[-1]:.3f}"
                f"  {bench_http.middle(cpu) if cpu else float('nan'):12.3f}  {streamed}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
