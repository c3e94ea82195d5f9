"""Single-event requests into ``ingest-mw serve``, per sink and number of connections: req/s and latency.

What a fleet of shippers sending one event per request meets: ``serve`` (its
defaults but ``--rate-limit none``) alone on one CPU, ``wrk --latency`` on
the other, for each sink (the SQLite default, JSON Lines, memory://) and
each number of connections, each case on a fresh server and a fresh file.
The table gives requests/s, the latency percentiles and the answers other
than 2xx (one client address may hold at most ``--max-requests-per-client``
requests, 32 by default: keep the connections at or below it). No target:
the figures behind the group commit and the store slots of the file sinks
(``bench/README.md``). Run from the repository root::

    python3 bench/single_events.py                      # about 2 minutes
    python3 bench/single_events.py --connections 1 16 --sinks sqlite --seconds 5
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-single-token"
BODY = '{"message": "hello from the bench", "level": "info", "dt": "2024-01-01T00:00:00Z"}'
LUA = f"""
wrk.method = "POST"
wrk.body = [[{BODY}]]
wrk.headers["Authorization"] = "Bearer {TOKEN}"
wrk.headers["Content-Type"] = "application/json"
"""
SINKS = {
    "sqlite": lambda tmp: f"sqlite:///{tmp}/events.db",
    "jsonl": lambda tmp: f"jsonl:///{tmp}/events.jsonl",
    "memory": lambda tmp: "memory://",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: int | None):  # type: ignore[no-untyped-def]
    return None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("serve did not start listening")


def wrk(script: Path, port: int, seconds: int, connections: int, cpu: int | None) -> str:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s", "-s", str(script)]
    run = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        preexec_fn=pinned(cpu),
    )
    if run.returncode != 0:
        raise SystemExit(f"wrk failed:\n{run.stdout}{run.stderr}")
    return run.stdout


def figures(text: str) -> dict[str, str]:
    found = {"req/s": re.search(r"Requests/sec:\s*([\d.]+)", text)}
    for percentile in ("50", "90", "99"):
        found[f"p{percentile}"] = re.search(rf"^\s+{percentile}%\s+(\S+)", text, re.MULTILINE)
    found["max"] = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text)
    found["non-2xx"] = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    return {key: (match.group(1) if match else "0") for key, match in found.items()}


Cpus = tuple[int | None, int | None]


def one_case(sink: str, connections: int, args: argparse.Namespace, cpus: Cpus) -> dict[str, str]:
    server_cpu, wrk_cpu = cpus
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(LUA)
        port = free_port()
        command = [sys.executable, "-m", "ingest_mw", "serve", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--sink", SINKS[sink](tmp), "--rate-limit", "none", "--token", f"bench={TOKEN}"]
        command += ["--api-key", "bench=bench-key", "--log-level", "warning", *args.serve_arg]
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned(server_cpu)
        )
        try:
            wait_ready(proc, port)
            wrk(script, port, args.warmup, connections, wrk_cpu)
            return figures(wrk(script, port, args.seconds, connections, wrk_cpu))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sinks", nargs="+", choices=tuple(SINKS), default=list(SINKS))
    parser.add_argument("--connections", nargs="+", type=int, default=[1, 4, 16, 32])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--serve-arg", action="append", default=[], help="an option for serve (repeatable)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk (apt-get install wrk)")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pair = (cpus[1], cpus[0]) if len(cpus) >= 2 else (None, None)  # as bench/http.py: serve on the second
    print(f"serve alone on CPU {pair[0]}, wrk on CPU {pair[1]}; {args.seconds} s per case after {args.warmup} s")
    print(f"{'sink':<8} {'connections':>11} {'req/s':>9} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9} {'non-2xx':>8}")
    for sink in args.sinks:
        for connections in args.connections:
            got = one_case(sink, connections, args, pair)
            print(
                f"{sink:<8} {connections:>11} {float(got['req/s']):>9,.0f} {got['p50']:>9} {got['p90']:>9}"
                f" {got['p99']:>9} {got['max']:>9} {got['non-2xx']:>8}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
