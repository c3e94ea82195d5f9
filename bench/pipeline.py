"""Events/s of the in-process ingest pipeline beside raw decoding of the same bytes.

Each case sends a batch through the whole request flow, as an adapter does:
``Routes.find`` -> ``Request`` -> ``api.handle`` run by ``run_sync`` with a
``SyncIO`` (the body fed in 64 KiB chunks) -> a ``MemorySink`` that first
reads every event's time and object, as the built-in sinks do (cleared
between samples), and times it beside the bare decode a minimal app would do
on the same bytes (``orjson.loads``, one ``orjson.loads`` per line for NDJSON,
``msgpack.unpackb``).
The ratio pipeline / raw is what issue 2 and issue 3 set a target for (>= 0.5),
and issue 16 for OTLP/HTTP logs: 1000 records in binary protobuf (raw:
``ExportLogsServiceRequest.FromString``) and in the OTLP JSON mapping (raw:
``orjson.loads``).

Run from the repository root::

    python3 bench/pipeline.py            # about 40 s
    python3 bench/pipeline.py --quick    # fewer samples, a few seconds
    python3 bench/pipeline.py --only OTLP   # the cases whose name holds OTLP

Timing: ``time.perf_counter`` around each request (or raw decode); a sample
is the mean of ``number`` of them (about 0.2 s worth); the pipeline and the
raw decode are sampled alternately, after a warm-up sample of each; best and
median per batch are printed, and the ratio is taken on the medians. The sink
is cleared between requests, outside the timing, and what the raw decode
returns is freed outside it too. The garbage collector stays on for both.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
# bench/http.py would shadow the standard library's http package: keep this
# folder off the import path, and import the checkout this file belongs to.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.dirname(HERE))

import msgpack  # noqa: E402
import orjson  # noqa: E402

from ingest_mw.api import Request, Routes  # noqa: E402
from ingest_mw.baselime import BaselimeAPI  # noqa: E402
from ingest_mw.betterstack import BetterStackAPI  # noqa: E402
from ingest_mw.drive import SyncIO, run_sync  # noqa: E402
from ingest_mw.otlp import OTLPLogsAPI  # noqa: E402
from ingest_mw.sinks.memory import MemorySink  # noqa: E402
from ingest_mw.sinks.record import times_and_data  # noqa: E402


class StoringSink(MemorySink):
    """Reads every event's time and object before keeping the batch, as the
    built-in sinks that store them (SQLite, JSON Lines, PostgreSQL, Redis) do,
    through ``times_and_data``: a batch decides its events' times only when
    asked, so the pipeline is timed with that work in."""

    def __call__(self, batch: Any) -> None:
        times, data = times_and_data(batch.events)
        collections.deque(zip(times, data), maxlen=0)
        super().__call__(batch)


TOKEN = "bench-token"
API_KEY = "bench-key"
CHUNK = 64 * 1024
BATCH = 1000

_LEVELS = ("debug", "info", "info", "info", "warn", "error")
_MESSAGES = (
    "GET /api/v1/orders/{id} completed",
    "user signed in",
    "cache miss for key session:{id}",
    "payment provider answered slowly",
    "background job finished",
    "retrying request to upstream after timeout",
)
_PATHS = ("app/views/orders.py", "app/auth.py", "app/cache.py", "app/payments/client.py")
_FUNCS = ("get_order", "login", "lookup", "charge", "run")


def make_event(rng: random.Random, now: datetime, i: int, pad: int = 0) -> dict[str, Any]:
    """A log event like a Better Stack / Baselime client sends (about 250 bytes as JSON)."""
    dt = now - timedelta(seconds=rng.uniform(0, 60))
    event: dict[str, Any] = {
        "dt": dt.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "level": rng.choice(_LEVELS),
        "message": rng.choice(_MESSAGES).format(id=rng.randrange(10**6)),
        "context": {
            "runtime": {
                "file": rng.choice(_PATHS),
                "line": rng.randrange(1, 900),
                "function": rng.choice(_FUNCS),
            },
            "system": {"hostname": f"web-{rng.randrange(1, 9)}", "pid": rng.randrange(1000, 40000)},
        },
        "request_id": f"{rng.getrandbits(64):016x}",
    }
    if pad:
        event["user_agent"] = "x" * pad
    return event


def make_events(count: int, *, seed: int = 1, pad: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    return [make_event(rng, now, i, pad) for i in range(count)]


_SEVERITIES = {"debug": (5, "DEBUG"), "info": (9, "INFO"), "warn": (13, "WARN"), "error": (17, "ERROR")}


def make_otlp_request(count: int, *, seed: int = 4) -> Any:
    """An ``ExportLogsServiceRequest`` of ``count`` records like an SDK's: one
    resource and scope, each record with a time, severity, a string body, six
    attributes and a trace context (about 250 bytes of protobuf each, the same
    content as :func:`make_event`)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    rng = random.Random(seed)
    now = datetime.now(UTC)
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    for key, value in (("service.name", "bench"), ("service.namespace", "shop"), ("host.name", "web-3")):
        attribute = resource_logs.resource.attributes.add()
        attribute.key, attribute.value.string_value = key, value
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name, scope_logs.scope.version = "app.views", "1.4.2"
    for i in range(count):
        event = make_event(rng, now, i)
        record = scope_logs.log_records.add()
        dt = datetime.fromisoformat(event["dt"])
        record.time_unix_nano = int(dt.timestamp() * 1e6) * 1000
        record.observed_time_unix_nano = record.time_unix_nano + 1500
        record.severity_number, record.severity_text = _SEVERITIES[event["level"]]
        record.body.string_value = event["message"]
        runtime, system = event["context"]["runtime"], event["context"]["system"]
        for key, value in (
            ("code.file.path", runtime["file"]),
            ("code.line.number", runtime["line"]),
            ("code.function.name", runtime["function"]),
            ("host.name", system["hostname"]),
            ("process.pid", system["pid"]),
            ("request_id", event["request_id"]),
        ):
            attribute = record.attributes.add()
            attribute.key = key
            if isinstance(value, int):
                attribute.value.int_value = value
            else:
                attribute.value.string_value = value
        record.trace_id = rng.getrandbits(128).to_bytes(16, "big")
        record.span_id = rng.getrandbits(64).to_bytes(8, "big")
        record.flags = 1
    return request


def otlp_json(request: Any) -> bytes:
    """The OTLP JSON mapping of ``request`` (protobuf's, with hex ids and integer enums)."""
    import base64

    from google.protobuf.json_format import MessageToDict

    found = MessageToDict(request, use_integers_for_enums=True)
    for resource_logs in found["resourceLogs"]:
        for scope_logs in resource_logs["scopeLogs"]:
            for record in scope_logs["logRecords"]:
                for key in ("traceId", "spanId"):
                    record[key] = base64.b64decode(record[key]).hex()
    return orjson.dumps(found)


def chunks(body: bytes) -> list[bytes]:
    return [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]


class Case:
    """One row of the report: a body, the headers it is sent with, and its raw decode."""

    def __init__(
        self,
        name: str,
        routes: Routes,
        path: str,
        headers: dict[str, str],
        body: bytes,
        events: int,
        raw: Callable[[], Any],
        raw_name: str,
        *,
        expect_status: int = 202,
        expect_stored: int | None = None,
    ) -> None:
        self.name = name
        self.routes = routes
        self.path = path
        self.headers = {**headers, "content-length": str(len(body))}
        self.body = body
        self.parts = chunks(body)
        self.events = events
        self.raw = raw
        self.raw_name = raw_name
        self.expect_status = expect_status
        self.expect_stored = events if expect_stored is None else expect_stored

    def run(self, sink: MemorySink) -> Any:
        """One request through the whole flow, as the adapters run it."""
        api, route = self.routes.find(self.path)  # type: ignore[misc]
        request = Request("POST", self.path, dict(self.headers), "127.0.0.1")
        return run_sync(api.handle(request, route, SyncIO(self.read_body, sink)))

    def read_body(self, feed: Callable[[bytes], None]) -> None:
        """The body in its chunks, as an adapter reads it into the flow."""
        for part in self.parts:
            feed(part)

    def check(self, sink: MemorySink) -> None:
        sink.clear()
        response = self.run(sink)
        stored = len(sink.events)
        sink.clear()
        if response.status != self.expect_status or stored != self.expect_stored:
            raise SystemExit(
                f"{self.name}: got {response.status} with {stored} events stored "
                f"({response.body[:200]!r}); expected {self.expect_status} with {self.expect_stored}"
            )


def sample(fn: Callable[[], Any], number: int, after: Callable[[Any], None]) -> float:
    """Seconds per call of ``fn`` over ``number`` calls, each timed on its own.

    ``after`` gets each result outside the timing (the pipeline's checks that
    the batch was stored, then the sink is cleared); whatever a call made is
    freed outside the timing too, for the pipeline and the raw decode alike.
    """
    perf = time.perf_counter
    total = 0.0
    gc.collect()
    for _ in range(number):
        start = perf()
        result = fn()
        total += perf() - start
        after(result)
        result = None
    return total / number


def measure(case: Case, sink: MemorySink, repeats: int, budget: float) -> dict[str, float]:
    case.check(sink)

    def stored(response: Any) -> None:
        count = sum(len(batch.events) for batch in sink.batches)
        sink.clear()
        if response.status != case.expect_status or count != case.expect_stored:
            raise SystemExit(f"{case.name}: {response.status} with {count} events stored")

    def dropped(result: Any) -> None:
        pass

    def pipeline() -> Any:
        return case.run(sink)

    one = sample(pipeline, 3, stored)
    number = max(3, int(budget / max(one, 1e-9)))
    sample(pipeline, number, stored)  # warm-up, not counted
    sample(case.raw, number, dropped)
    pipe, raw = [], []
    for _ in range(repeats):
        pipe.append(sample(pipeline, number, stored))
        raw.append(sample(case.raw, number, dropped))
    return {
        "pipe_best": min(pipe),
        "pipe_median": statistics.median(pipe),
        "raw_best": min(raw),
        "raw_median": statistics.median(raw),
    }


def build_cases(big: bool) -> list[Case]:
    # No rate limit: the limiter's cost is bench/ratelimit_bench.py's subject, and
    # Better Stack's default (500 a minute) would answer most of these with 429.
    bs = Routes(BetterStackAPI([TOKEN], rate_limit=None))
    bl = Routes(BaselimeAPI([API_KEY], rate_limit=None))
    auth = {"authorization": f"Bearer {TOKEN}"}
    key = {"x-api-key": API_KEY, "x-service": "bench"}
    loads, unpackb = orjson.loads, msgpack.unpackb

    events = make_events(BATCH)
    as_json = orjson.dumps(events)
    as_ndjson = b"\n".join(orjson.dumps(e) for e in events) + b"\n"
    as_msgpack = msgpack.packb(events)
    single = orjson.dumps(events[0])

    def ndjson_raw(body: bytes) -> Callable[[], Any]:
        return lambda: [loads(line) for line in body.splitlines() if line]

    cases = [
        Case(
            "Better Stack JSON",
            bs,
            "/",
            {**auth, "content-type": "application/json"},
            as_json,
            BATCH,
            lambda: loads(as_json),
            "orjson.loads",
        ),
        Case(
            "Better Stack NDJSON",
            bs,
            "/",
            {**auth, "content-type": "application/x-ndjson"},
            as_ndjson,
            BATCH,
            ndjson_raw(as_ndjson),
            "orjson.loads per line",
        ),
        Case(
            "Better Stack MessagePack",
            bs,
            "/",
            {**auth, "content-type": "application/msgpack"},
            as_msgpack,
            BATCH,
            lambda: unpackb(as_msgpack, timestamp=3),
            "msgpack.unpackb",
        ),
        Case(
            "Better Stack JSON, 1 event",
            bs,
            "/",
            {**auth, "content-type": "application/json"},
            single,
            1,
            lambda: loads(single),
            "orjson.loads",
        ),
        Case(
            "Baselime array (body <= 256 KiB)",
            bl,
            "/v1/logs",
            {**key, "content-type": "application/json"},
            as_json,
            BATCH,
            lambda: loads(as_json),
            "orjson.loads",
        ),
    ]

    # ~330-byte events: a 1000-event array over 256 KiB, so every element is measured.
    wide = orjson.dumps(make_events(BATCH, seed=2, pad=80))
    cases.append(
        Case(
            "Baselime array (body > 256 KiB, sized)",
            bl,
            "/v1/logs",
            {**key, "content-type": "application/json"},
            wide,
            BATCH,
            lambda: loads(wide),
            "orjson.loads",
        )
    )

    # One element that is not valid JSON: the whole body fails to parse, so it is
    # split into elements and each is parsed alone. Raw: orjson.loads of the same
    # body with that element intact (orjson cannot decode the broken one at all).
    broken = as_json.replace(b'"level":', b'"level":oops', 1)
    assert len(broken) == len(as_json) + 4
    cases.append(
        Case(
            "Baselime array, 1 invalid element",
            bl,
            "/v1/logs",
            {**key, "content-type": "application/json"},
            broken,
            BATCH,
            lambda: loads(as_json),
            "orjson.loads (valid twin)",
            expect_status=400,
            expect_stored=BATCH - 1,
        )
    )

    # OTLP/HTTP logs: the same content as 1000 records of one resource and scope.
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    otlp = Routes(OTLPLogsAPI([TOKEN]))
    bearer = {"authorization": f"Bearer {TOKEN}"}
    request = make_otlp_request(BATCH)
    as_protobuf = request.SerializeToString()
    as_otlp_json = otlp_json(request)
    from_string = ExportLogsServiceRequest.FromString
    cases.append(
        Case(
            "OTLP protobuf",
            otlp,
            "/v1/logs",
            {**bearer, "content-type": "application/x-protobuf"},
            as_protobuf,
            BATCH,
            lambda: from_string(as_protobuf),
            "ExportLogsServiceRequest.FromString",
            expect_status=200,
        )
    )
    cases.append(
        Case(
            "OTLP JSON",
            otlp,
            "/v1/logs",
            {**bearer, "content-type": "application/json"},
            as_otlp_json,
            BATCH,
            lambda: loads(as_otlp_json),
            "orjson.loads",
            expect_status=200,
        )
    )

    if big:
        # "up to 6MB of uncompressed data per request": 6,000,000 bytes or so.
        many = []
        size = 2
        rng_seed = 3
        for event in make_events(30_000, seed=rng_seed):
            item = orjson.dumps(event)
            if size + len(item) + 1 > 6_000_000:
                break
            many.append(event)
            size += len(item) + 1
        huge = orjson.dumps(many)
        cases.append(
            Case(
                f"Baselime 6 MB array ({len(many)} events)",
                bl,
                "/v1/logs",
                {**key, "content-type": "application/json"},
                huge,
                len(many),
                lambda: loads(huge),
                "orjson.loads",
            )
        )
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter samples")
    parser.add_argument("--repeats", type=int, default=None, help="samples per case (default 9, quick 5)")
    parser.add_argument("--no-big", action="store_true", help="skip the 6 MB Baselime body")
    parser.add_argument("--only", metavar="TEXT", help="run only the cases whose name contains TEXT (e.g. OTLP)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 9)
    # Seconds per sample, roughly: long enough to take in a few of the garbage
    # collector's full passes, which come every few dozen 1000-event batches.
    budget = 0.05 if args.quick else 0.2

    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"orjson {orjson.__version__}, msgpack {'.'.join(map(str, msgpack.version))}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    cases = build_cases(big=not args.no_big)
    if args.only is not None:
        cases = [case for case in cases if args.only.lower() in case.name.lower()]
    sink = StoringSink()
    header = (
        f"{'case':<40} {'body':>7} {'events':>6}  {'pipeline ev/s':>13} {'raw ev/s':>10}"
        f"  {'ratio':>5} {'(best)':>6}  {'pipeline best/median':>21}  raw decode"
    )
    print(
        f"{repeats} samples per case; events/s and ratio from the medians, (best) from the best"
        " samples; target ratio >= 0.5"
    )
    print(header)
    print("-" * len(header))
    worst: dict[str, float] = {}  # per target: issues 2 and 3 (Better Stack, Baselime), issue 16 (OTLP)
    for case in cases:
        r = measure(case, sink, repeats, budget)
        ratio = r["raw_median"] / r["pipe_median"]
        best_ratio = r["raw_best"] / r["pipe_best"]
        pipe_eps = case.events / r["pipe_median"]
        raw_eps = case.events / r["raw_median"]
        times = f"{r['pipe_best'] * 1e3:.3f}/{r['pipe_median'] * 1e3:.3f} ms"
        print(
            f"{case.name:<40} {len(case.body) / 1024:>5.0f}Ki {case.events:>6}  {pipe_eps:>13,.0f}"
            f" {raw_eps:>10,.0f}  {ratio:>5.2f} {best_ratio:>6.2f}  {times:>21}  {case.raw_name}",
            flush=True,
        )
        if case.events == BATCH and case.expect_status in (200, 202):
            target = "OTLP (issue 16)" if case.name.startswith("OTLP") else "Better Stack and Baselime (issues 2, 3)"
            worst[target] = min(worst.get(target, ratio), ratio)
    for target, ratio in worst.items():
        verdict = "met" if ratio >= 0.5 else "MISSED"
        print(f"\nworst ratio on valid 1000-event batches, {target}: {ratio:.2f} (target 0.5: {verdict})", end="")
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
