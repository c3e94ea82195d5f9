"""What the rate-limit check costs per request, in-process through the WSGI app.

The same one-event Better Stack POST goes through ``WSGIApp`` (``wsgi.input``
read, auth, rate limit, JSON decode, a ``MemorySink``) with no rate limit,
with the default limit counted in ``memory://``, and with it counted in a
``redis-server`` this script starts on a free loopback port (and kills at
the end). The difference to the first row is the check's cost: for Redis,
two round trips on loopback (the hit, then the window's stats for the
headers).

The limit is Better Stack's default, 500/minute per client IP, and the
requests come from ``--clients`` addresses in turn, so that none is refused
(every answer is checked to be 202) and each moving window holds a
realistic number of entries.

Run from the repository root::

    python3 bench/ratelimit_bench.py            # about 10 s
    python3 bench/ratelimit_bench.py --quick    # a few seconds
    python3 bench/ratelimit_bench.py --strategy fixed-window --no-redis

Timing: ``time.perf_counter`` over ``--requests`` requests per sample; the
cases are sampled in turn, ``--samples`` times; the median and best
microseconds per request are printed.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import platform
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# bench/http.py would shadow the standard library's http package: keep this
# folder off the import path; import this checkout, and the tests' Redis runner.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import limits  # noqa: E402
from redis_fixture import RedisServer  # noqa: E402

from ingest_mw.betterstack import RATE_LIMIT, BetterStackAPI  # noqa: E402
from ingest_mw.ratelimit import RateLimit  # noqa: E402
from ingest_mw.sinks.memory import MemorySink  # noqa: E402
from ingest_mw.wsgi import WSGIApp  # noqa: E402

TOKEN = "bench-token"
BODY = b'{"dt": "2026-01-01T00:00:00Z", "message": "user signed in", "level": "info"}'


class Case:
    """One app configuration and a ready-made request to send it."""

    def __init__(self, name: str, rate_limit: RateLimit | None, clients: int) -> None:
        self.name = name
        self.sink = MemorySink()
        self.app = WSGIApp(BetterStackAPI([TOKEN], rate_limit=rate_limit), sink=self.sink)
        self.environs = [
            {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/",
                "SCRIPT_NAME": "",
                "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(BODY)),
                "HTTP_AUTHORIZATION": f"Bearer {TOKEN}",
                "REMOTE_ADDR": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
            }
            for n in range(clients)
        ]
        self.statuses: list[str] = []

    def _start_response(self, status: str, headers: list[tuple[str, str]]) -> None:
        self.statuses.append(status)

    def run(self, number: int) -> float:
        """Seconds per request over ``number`` requests; each must be accepted."""
        environs, app, start_response = self.environs, self.app, self._start_response
        count = len(environs)
        self.statuses.clear()
        gc.collect()
        start = time.perf_counter()
        for i in range(number):
            environ = dict(environs[i % count])
            environ["wsgi.input"] = io.BytesIO(BODY)
            app(environ, start_response)
        elapsed = time.perf_counter() - start
        refused = [status for status in self.statuses if not status.startswith("202")]
        if refused:
            raise SystemExit(f"{self.name}: {len(refused)} requests not accepted, e.g. {refused[0]}")
        self.sink.clear()
        return elapsed / number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter samples")
    parser.add_argument("--requests", type=int, default=None, help="requests per sample (default 4000, quick 1000)")
    parser.add_argument("--samples", type=int, default=None, help="samples per case (default 9, quick 3)")
    parser.add_argument("--clients", type=int, default=2000, help="client addresses in turn (default %(default)s)")
    parser.add_argument("--strategy", default="moving-window", help="limits strategy (default %(default)s)")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis case")
    args = parser.parse_args(argv)
    requests = args.requests or (1000 if args.quick else 4000)
    samples = args.samples or (3 if args.quick else 9)
    # Every sample adds requests/clients hits per address: stay under the limit.
    hits_per_client = (samples + 1) * requests // args.clients + 1
    if hits_per_client >= 500:
        raise SystemExit(f"{hits_per_client} hits per client would reach {RATE_LIMIT}: raise --clients")

    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), limits {limits.__version__},"
        f" {platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(
        f"one-event Better Stack POST through WSGIApp; rate limit {RATE_LIMIT} per client IP,"
        f" {args.strategy}, over {args.clients} client IPs"
    )
    server: RedisServer | None = None
    cases = [
        Case("no rate limit", None, args.clients),
        Case("memory://", RateLimit(limit=RATE_LIMIT, strategy=args.strategy), args.clients),
    ]
    try:
        if not args.no_redis:
            executable = shutil.which("redis-server")
            if executable is None:
                print("redis-server not found: skipping the Redis case (bash .ci/run installs it)")
            else:
                server = RedisServer(executable)
                server.start()
                rate_limit = RateLimit(limit=RATE_LIMIT, strategy=args.strategy, storage_uri=server.url)
                cases.append(Case(server.url, rate_limit, args.clients))
        measure(cases, requests, samples)
    finally:
        if server is not None:
            server.stop()
    return 0


def measure(cases: list[Case], requests: int, samples: int) -> None:
    for case in cases:
        case.run(requests // 10 or 1)  # warm up: storage opened, connections made
    timings: dict[str, list[float]] = {case.name: [] for case in cases}
    for _ in range(samples):
        for case in cases:
            timings[case.name].append(case.run(requests))
    header = f"{'storage':<32} {'median µs/req':>13} {'best µs/req':>12} {'check µs/req':>13}"
    print(f"{samples} samples of {requests} requests per case")
    print(header)
    print("-" * len(header))
    base = statistics.median(timings[cases[0].name])
    for case in cases:
        median = statistics.median(timings[case.name])
        cost = "-" if case is cases[0] else f"+{(median - base) * 1e6:.1f}"
        print(f"{case.name:<32} {median * 1e6:>13.1f} {min(timings[case.name]) * 1e6:>12.1f} {cost:>13}")


if __name__ == "__main__":
    raise SystemExit(main())
