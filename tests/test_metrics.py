"""Prometheus metrics through the observer hook: what a scrape of ``/metrics`` shows
after known traffic, through both adapters under a mount prefix."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import threading
from typing import Any

import orjson
import pytest
from clients import PREFIX, make_client, mounted_post_scope
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sinks_for_tests import FailingSink

from ingest_mw import ASGIApp, BaselimeAPI, BetterStackAPI, MemorySink, RateLimit
from ingest_mw.admission import FREE_BODY_BYTES, Admission
from ingest_mw.metrics import PrometheusObserver, metrics_asgi_app, metrics_wsgi_app
from ingest_mw.observe import CLIENT_GONE, Observation, Observer, Observers

TOKEN = "s3cret-token"
KEY = "s3cret-key"
BETTERSTACK = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
BASELIME = {"x-api-key": KEY, "Content-Type": "application/json"}


def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as a scraper reads it: ``{(sample name, labels): value}``."""
    reply = client.request("GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def observed_client(adapter: str, apis: Any, sink: Any, registry: CollectorRegistry | None = None) -> Any:
    registry = registry or CollectorRegistry()
    metrics = metrics_wsgi_app(registry) if adapter == "wsgi" else metrics_asgi_app(registry)
    return make_client(adapter, apis, sink, PrometheusObserver(registry=registry), {"/metrics": metrics})


def events(count: int) -> bytes:
    return orjson.dumps([{"message": f"event {i}"} for i in range(count)])


def test_counters_move_by_exactly_the_events_sent(adapter: str) -> None:
    sink = MemorySink()
    client = observed_client(adapter, [BetterStackAPI({"web": TOKEN}), BaselimeAPI({"team": KEY})], sink)
    sent_wire = 0
    for count in (1, 5, 10):
        body = events(count)
        sent_wire += len(body)
        assert client.request("POST", f"{PREFIX}/", body, BETTERSTACK).status == 202
    baselime_body = b'[{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}, 7, "x"]'
    assert client.request("POST", f"{PREFIX}/v1/web", baselime_body, BASELIME).status == 400
    assert client.request("POST", f"{PREFIX}/", events(3), {**BETTERSTACK, "Authorization": "Bearer no"}).status == 403
    samples = scrape(client)

    assert value(samples, "ingest_mw_requests_total", api="betterstack", status="202") == 3
    assert value(samples, "ingest_mw_requests_total", api="betterstack", status="403") == 1
    assert value(samples, "ingest_mw_requests_total", api="baselime", status="400") == 1
    assert value(samples, "ingest_mw_events_accepted_total", api="betterstack") == 16 == len(sink.events[:16])
    assert value(samples, "ingest_mw_events_accepted_total", api="baselime") == 4
    assert value(samples, "ingest_mw_events_refused_total", api="baselime", reason="not_an_object") == 2
    # The refused request's body was never read: it counts no bytes.
    assert value(samples, "ingest_mw_request_body_bytes_total", api="betterstack") == sent_wire
    assert value(samples, "ingest_mw_request_body_decoded_bytes_total", api="betterstack") == sent_wire
    assert value(samples, "ingest_mw_request_body_bytes_total", api="baselime") == len(baselime_body)
    assert value(samples, "ingest_mw_storage_duration_seconds_count", api="betterstack") == 3
    assert value(samples, "ingest_mw_storage_duration_seconds_count", api="baselime") == 1
    assert value(samples, "ingest_mw_request_duration_seconds_count", api="betterstack") == 4
    # Read from the admission when scraped: present, and nothing left in flight.
    assert samples[("ingest_mw_requests_in_flight", ())] == 0
    assert samples[("ingest_mw_request_body_bytes_in_flight", ())] == 0
    assert samples[("ingest_mw_batches_in_storage", ())] == 0
    assert value(samples, "ingest_mw_storage_errors_total", api="betterstack") == 0
    assert len(sink.batches) == 4


def test_compressed_bodies_count_wire_and_decoded_bytes_apart(adapter: str) -> None:
    client = observed_client(adapter, BetterStackAPI([TOKEN]), MemorySink())
    body = events(50)
    wire = gzip.compress(body)
    headers = {**BETTERSTACK, "Content-Encoding": "gzip"}
    assert client.request("POST", f"{PREFIX}/", wire, headers).status == 202
    samples = scrape(client)
    assert value(samples, "ingest_mw_request_body_bytes_total", api="betterstack") == len(wire)
    assert value(samples, "ingest_mw_request_body_decoded_bytes_total", api="betterstack") == len(body)
    assert value(samples, "ingest_mw_events_accepted_total", api="betterstack") == 50


def test_rate_limit_refusals_are_counted(adapter: str) -> None:
    client = observed_client(adapter, BetterStackAPI([TOKEN], rate_limit="2/minute"), MemorySink())
    client.keep_loop()  # memory:// counts per event loop: the three requests share one
    statuses = [client.request("POST", f"{PREFIX}/", events(1), BETTERSTACK).status for _ in range(3)]
    assert statuses == [202, 202, 429]
    samples = scrape(client)
    assert value(samples, "ingest_mw_rate_limited_total", api="betterstack") == 1
    assert value(samples, "ingest_mw_requests_total", api="betterstack", status="429") == 1
    assert value(samples, "ingest_mw_events_accepted_total", api="betterstack") == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


def test_an_unreachable_rate_limit_storage_is_counted(adapter: str) -> None:
    rate_limit = RateLimit(limit="10/minute", storage_uri=f"redis://127.0.0.1:{_closed_port()}/0")
    client = observed_client(adapter, BetterStackAPI([TOKEN], rate_limit=rate_limit), MemorySink())
    assert client.request("POST", f"{PREFIX}/", events(2), BETTERSTACK).status == 202  # fails open
    samples = scrape(client)
    assert value(samples, "ingest_mw_rate_limit_storage_errors_total", api="betterstack") == 1
    assert value(samples, "ingest_mw_rate_limited_total", api="betterstack") == 0
    assert value(samples, "ingest_mw_events_accepted_total", api="betterstack") == 2


def test_a_failing_storage_hook_counts_an_error_and_refused_events(adapter: str, caplog: Any) -> None:
    client = observed_client(adapter, BetterStackAPI([TOKEN]), FailingSink())
    with caplog.at_level(logging.ERROR, "ingest_mw"):
        assert client.request("POST", f"{PREFIX}/", events(7), BETTERSTACK).status == 500
    samples = scrape(client)
    assert value(samples, "ingest_mw_storage_errors_total", api="betterstack") == 1
    assert value(samples, "ingest_mw_events_refused_total", api="betterstack", reason="storage_error") == 7
    assert value(samples, "ingest_mw_events_accepted_total", api="betterstack") == 0
    assert value(samples, "ingest_mw_storage_duration_seconds_count", api="betterstack") == 1
    assert value(samples, "ingest_mw_requests_total", api="betterstack", status="500") == 1


def test_two_adapters_on_one_registry_add_up() -> None:
    registry = CollectorRegistry()
    first = observed_client("wsgi", BetterStackAPI([TOKEN]), MemorySink(), registry)
    second = observed_client("asgi", BetterStackAPI([TOKEN]), MemorySink(), registry)
    assert first.request("POST", f"{PREFIX}/", events(2), BETTERSTACK).status == 202
    assert second.request("POST", f"{PREFIX}/", events(3), BETTERSTACK).status == 202
    assert value(scrape(first), "ingest_mw_events_accepted_total", api="betterstack") == 5


def test_a_client_gone_mid_body_leaves_nothing_in_flight() -> None:
    registry = CollectorRegistry()
    seen: list[Observation] = []

    class Keep(Observer):
        def finished(self, observation: Observation, token: object) -> None:
            seen.append(observation)

    app = ASGIApp(
        BetterStackAPI([TOKEN]), sink=MemorySink(), observer=Observers(PrometheusObserver(registry=registry), Keep())
    )
    scope = mounted_post_scope(BETTERSTACK)
    messages = iter([{"type": "http.request", "body": b"[{", "more_body": True}, {"type": "http.disconnect"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent == []  # nobody to answer
    assert [s.status for s in seen] == [CLIENT_GONE]
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in registry.collect() for s in f.samples}
    assert samples[("ingest_mw_requests_in_flight", ())] == 0
    assert value(samples, "ingest_mw_requests_total", api="betterstack", status=str(CLIENT_GONE)) == 1


def test_an_observer_that_raises_does_not_change_the_answer(adapter: str, caplog: Any) -> None:
    class Broken(Observer):
        def finished(self, seen: Observation, token: object) -> None:
            raise RuntimeError("observer bug")

    sink = MemorySink()
    client = make_client(adapter, BetterStackAPI([TOKEN]), sink, Broken())
    with caplog.at_level(logging.ERROR, "ingest_mw"):
        assert client.request("POST", f"{PREFIX}/", events(1), BETTERSTACK).status == 202
    assert len(sink.events) == 1
    assert "observer hook" in caplog.text and "observer bug" in caplog.text


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_metrics_answers_get_only(adapter: str, method: str) -> None:
    client = observed_client(adapter, BetterStackAPI([TOKEN]), MemorySink())
    reply = client.request(method, "/metrics")
    assert (reply.status, reply.headers["allow"]) == (405, "GET, HEAD")


def test_openmetrics_is_served_when_asked(adapter: str) -> None:
    client = observed_client(adapter, BetterStackAPI([TOKEN]), MemorySink())
    client.request("POST", f"{PREFIX}/", events(1), BETTERSTACK)
    reply = client.request("GET", "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert reply.headers["content-type"].startswith("application/openmetrics-text")
    assert reply.body.rstrip().endswith(b"# EOF")
    assert b'ingest_mw_events_accepted_total{api="betterstack"} 1.0' in reply.body


def test_a_thread_per_request_leaves_one_tally_per_live_thread() -> None:
    # wsgiref's threading server, Django's runserver: a new thread for every request.
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry=registry)
    client = make_client("wsgi", BetterStackAPI([TOKEN], rate_limit=None), MemorySink(), observer)
    statuses: list[int] = []

    def post() -> None:
        statuses.append(client.request("POST", f"{PREFIX}/", events(2), BETTERSTACK).status)

    for _ in range(50):
        thread = threading.Thread(target=post)
        thread.start()
        thread.join(timeout=10)
    assert statuses == [202] * 50
    assert registry.get_sample_value("ingest_mw_events_accepted_total", {"api": "betterstack"}) == 100
    assert registry.get_sample_value("ingest_mw_requests_total", {"api": "betterstack", "status": "202"}) == 50
    assert registry.get_sample_value("ingest_mw_requests_in_flight") == 0
    assert len(observer.tallies._live) <= 1  # the ended threads' counts were folded into one tally


def test_the_in_flight_gauges_show_a_request_being_served() -> None:
    # A body that declares 1 MiB and stalls after its first chunk: one request in
    # flight, holding its body's bytes past the first 64 KiB in the admission's budget.
    registry = CollectorRegistry()
    admission = Admission()
    api = BetterStackAPI([TOKEN], admission=admission)
    # The observer is told the API's admission by the adapter: nothing to pass it.
    app = ASGIApp(api, sink=MemorySink(), observer=PrometheusObserver(registry=registry))
    body = events(1).ljust(1024 * 1024)
    scope = mounted_post_scope({**BETTERSTACK, "Content-Length": str(len(body))})
    sent: list[dict[str, Any]] = []

    async def scenario() -> tuple[float | None, float | None]:
        rest = asyncio.Event()
        chunks = [{"type": "http.request", "body": body[:1000], "more_body": True}]

        async def receive() -> dict[str, Any]:
            if chunks:
                return chunks.pop()
            await rest.wait()
            return {"type": "http.request", "body": body[1000:], "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        served = asyncio.create_task(app(scope, receive, send))
        await asyncio.sleep(0.05)
        during = (
            registry.get_sample_value("ingest_mw_requests_in_flight"),
            registry.get_sample_value("ingest_mw_request_body_bytes_in_flight"),
        )
        rest.set()
        await served
        return during

    requests, body_bytes = asyncio.run(scenario())
    assert (requests, body_bytes) == (1, len(body) - FREE_BODY_BYTES)
    assert sent[0]["status"] == 202
    assert registry.get_sample_value("ingest_mw_requests_in_flight") == 0
    assert registry.get_sample_value("ingest_mw_request_body_bytes_in_flight") == 0


def test_an_otlp_record_over_its_size_limit_is_counted_as_too_large(adapter: str) -> None:
    pb = pytest.importorskip("opentelemetry.proto.collector.logs.v1.logs_service_pb2")
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

    from ingest_mw import OTLPLogsAPI

    client = observed_client(adapter, OTLPLogsAPI([TOKEN], max_record_bytes=200), MemorySink())
    records = [LogRecord(body=AnyValue(string_value="kept")), LogRecord(body=AnyValue(string_value="x" * 500))]
    body = pb.ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=records)])]
    ).SerializeToString()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-protobuf"}
    assert client.request("POST", f"{PREFIX}/v1/logs", body, headers).status == 200
    samples = scrape(client)
    assert value(samples, "ingest_mw_events_accepted_total", api="otlp") == 1
    assert value(samples, "ingest_mw_events_refused_total", api="otlp", reason="too_large") == 1
    assert value(samples, "ingest_mw_events_refused_total", api="otlp", reason="invalid") == 0


def test_each_hook_an_observer_overrides_is_called_with_its_token(adapter: str) -> None:
    calls: list[tuple[str, Any]] = []

    class Started(Observer):
        def started(self, seen: Observation) -> str:
            calls.append(("started", seen.body_bytes))
            return "token"

        def received(self, seen: Observation, token: object) -> None:
            calls.append(("received", (seen.wire_bytes, seen.body_bytes, token)))

        def finished(self, seen: Observation, token: object) -> None:
            calls.append(("finished", (seen.status, token)))

    class FinishedOnly(Observer):
        def finished(self, seen: Observation, token: object) -> None:
            calls.append(("finished only", token))

    class DuckTyped:  # no base class: told every hook
        def started(self, seen: Observation) -> str:
            calls.append(("duck started", None))
            return "duck"

        def received(self, seen: Observation, token: object) -> None:
            calls.append(("duck received", token))

        def finished(self, seen: Observation, token: object) -> None:
            calls.append(("duck finished", token))

    body = gzip.compress(events(3))
    headers = {**BETTERSTACK, "Content-Encoding": "gzip"}
    for observer in (Started(), FinishedOnly(), DuckTyped(), Observers(FinishedOnly(), Started())):
        client = make_client(adapter, BetterStackAPI([TOKEN]), MemorySink(), observer)  # type: ignore[arg-type]
        assert client.request("POST", f"{PREFIX}/", body, headers).status == 202
    sizes = (len(body), len(events(3)))
    assert calls == [
        ("started", 0),
        ("received", (*sizes, "token")),
        ("finished", (202, "token")),
        ("finished only", None),
        ("duck started", None),
        ("duck received", "duck"),
        ("duck finished", "duck"),
        ("started", 0),
        ("received", (*sizes, "token")),
        ("finished only", None),
        ("finished", (202, "token")),
    ]
    assert (FinishedOnly.tells_started, FinishedOnly.tells_received) == (False, False)


def test_each_kind_of_refused_baselime_element_has_its_label(adapter: str) -> None:
    client = observed_client(adapter, BaselimeAPI({"team": KEY}, max_event_bytes=64), MemorySink())
    big = orjson.dumps({"message": "x" * 100})
    body = b'[{"a": 1}, ' + big + b', 7, {"b": 2}, {"c": nope}]'  # kept, too large, not an object, kept, not JSON
    reply = client.request("POST", f"{PREFIX}/v1/web", body, BASELIME)
    assert reply.status == 400
    samples = scrape(client)
    refused = {
        reason: value(samples, "ingest_mw_events_refused_total", api="baselime", reason=reason)
        for reason in ("too_large", "not_an_object", "invalid_json", "invalid")
    }
    assert refused == {"too_large": 1, "not_an_object": 1, "invalid_json": 1, "invalid": 0}
    assert value(samples, "ingest_mw_events_accepted_total", api="baselime") == 2


def test_every_counting_observer_counts_each_request_once(adapter: str) -> None:
    # The first observer that counts is counted by the flow, the second from
    # the observation it is told; a told observer beside them sees every request.
    first, second = CollectorRegistry(), CollectorRegistry()
    told: list[int] = []

    class Told(Observer):
        def finished(self, seen: Observation, token: object) -> None:
            told.append(seen.status)

    observer = Observers(PrometheusObserver(registry=first), Told(), PrometheusObserver(registry=second))
    metrics = metrics_wsgi_app(second) if adapter == "wsgi" else metrics_asgi_app(second)
    client = make_client(adapter, BetterStackAPI([TOKEN]), MemorySink(), observer, {"/metrics": metrics})
    for count in (1, 4):
        assert client.request("POST", f"{PREFIX}/", events(count), BETTERSTACK).status == 202
    assert client.request("POST", f"{PREFIX}/", events(2), {**BETTERSTACK, "Authorization": "Bearer no"}).status == 403
    assert told == [202, 202, 403]
    for registry in (first, second):
        assert registry.get_sample_value("ingest_mw_requests_total", {"api": "betterstack", "status": "202"}) == 2
        assert registry.get_sample_value("ingest_mw_requests_total", {"api": "betterstack", "status": "403"}) == 1
        assert registry.get_sample_value("ingest_mw_events_accepted_total", {"api": "betterstack"}) == 5
        assert registry.get_sample_value("ingest_mw_request_duration_seconds_count", {"api": "betterstack"}) == 3
        assert registry.get_sample_value("ingest_mw_storage_duration_seconds_count", {"api": "betterstack"}) == 2
    assert value(scrape(client), "ingest_mw_request_body_bytes_total", api="betterstack") == len(events(1)) + len(
        events(4)
    )


def test_a_prometheus_observer_that_overrides_finished_is_told_and_counts_once(adapter: str) -> None:
    registry = CollectorRegistry()
    told: list[int] = []

    class Shipped(PrometheusObserver):
        def finished(self, seen: Observation, token: object) -> None:
            told.append(seen.events_accepted)

    client = make_client(adapter, BetterStackAPI([TOKEN]), MemorySink(), Shipped(registry=registry))
    assert client.request("POST", f"{PREFIX}/", events(3), BETTERSTACK).status == 202
    assert told == [3]
    assert registry.get_sample_value("ingest_mw_requests_total", {"api": "betterstack", "status": "202"}) == 1
    assert registry.get_sample_value("ingest_mw_events_accepted_total", {"api": "betterstack"}) == 3


def test_two_observers_on_one_registry_count_each_request_once(adapter: str) -> None:
    # They share the registry's counts (as two adapters on it add up): a
    # settings list that names the observer twice must not count twice.
    registry = CollectorRegistry()
    observer = Observers(PrometheusObserver(registry=registry), PrometheusObserver(registry=registry))
    client = make_client(adapter, BetterStackAPI([TOKEN]), MemorySink(), observer)
    for _ in range(3):
        assert client.request("POST", f"{PREFIX}/", events(2), BETTERSTACK).status == 202
    assert registry.get_sample_value("ingest_mw_requests_total", {"api": "betterstack", "status": "202"}) == 3
    assert registry.get_sample_value("ingest_mw_events_accepted_total", {"api": "betterstack"}) == 6
