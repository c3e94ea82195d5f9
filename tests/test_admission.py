"""The core's protection against hostile or unlucky clients, through both adapters under a mount prefix.

Each limit is set small here (a request slot, a MiB of body bytes, a fraction
of a second of waiting), so every test is bounded in time; the defaults are
exercised by ``bench/hostile.py`` and the ``ingest-mw serve`` tests.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import logging
import threading
import time

import msgpack
import orjson
import pytest
from clients import PREFIX, make_client, mounted_post_scope

from ingest_mw import BaselimeAPI, BetterStackAPI, MemorySink
from ingest_mw import admission as admission_module
from ingest_mw.admission import Admission, Slots
from ingest_mw.asgi import ASGIApp, ASGIMiddleware
from ingest_mw.drive import LoopWakeup, ThreadWakeup
from ingest_mw.wsgi import WSGIMiddleware

TOKEN = "tok"
KEY = "key"
JSON_BS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
JSON_BL = {"x-api-key": KEY, "Content-Type": "application/json"}


def api_of(kind: str, admission: Admission | None = None, **kwargs):
    if kind == "betterstack":
        return BetterStackAPI([TOKEN], rate_limit=None, admission=admission, **kwargs)
    return BaselimeAPI([KEY], admission=admission, **kwargs)


def post(client, kind: str, body: bytes, headers: dict[str, str] | None = None, peer: str | None = None):
    path = f"{PREFIX}/" if kind == "betterstack" else f"{PREFIX}/v1/logs"
    base = JSON_BS if kind == "betterstack" else JSON_BL
    return client.request("POST", path, body, {**base, **(headers or {})}, peer=peer)


def unavailable_in_style(kind: str, reply) -> None:
    """A 503 with Retry-After, in the API's own body style."""
    assert reply.status == 503
    assert reply.headers["retry-after"] == "1"
    if kind == "betterstack":
        assert reply.body == b"Service Unavailable"
    else:
        assert orjson.loads(reply.body) == {"message": "Service Unavailable"}


class GateSink(MemorySink):
    """A sync hook that holds each batch until :attr:`release` is set (run in a
    worker thread by the ASGI adapter, in the request's thread by WSGI)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def __call__(self, batch) -> None:
        self.entered.release()
        assert self.release.wait(10), "the test never released the hook"
        super().__call__(batch)


def in_thread(target) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(target()))
    thread.start()
    return thread, result


KINDS = ["betterstack", "baselime"]


@pytest.mark.parametrize("kind", KINDS)
def test_past_max_requests_a_request_is_refused_at_once_then_served_again(adapter, kind):
    admission = Admission(max_requests=1)
    sink = GateSink()
    client = make_client(adapter, api_of(kind, admission), sink)
    first, first_reply = in_thread(lambda: post(client, kind, b'[{"message":"first"}]'))
    assert sink.entered.acquire(timeout=5)

    started = time.monotonic()
    refused = post(client, kind, b'[{"message":"second"}]')
    assert time.monotonic() - started < 1.0  # refused, not queued
    unavailable_in_style(kind, refused)
    assert refused.headers["connection"] == "close"  # its body was never read

    sink.release.set()
    first.join(10)
    assert first_reply[0].status == 202
    assert post(client, kind, b'[{"message":"third"}]').status == 202  # the slot came back
    assert [e.data["message"] for e in sink.events] == ["first", "third"]


@pytest.mark.parametrize("kind", KINDS)
def test_one_client_cannot_take_every_request_slot(adapter, kind):
    admission = Admission(max_requests_per_client=1)
    sink = GateSink()
    client = make_client(adapter, api_of(kind, admission), sink)
    first, first_reply = in_thread(lambda: post(client, kind, b'[{"message":"first"}]', peer="10.0.0.1"))
    assert sink.entered.acquire(timeout=5)
    unavailable_in_style(kind, post(client, kind, b'[{"message":"same client"}]', peer="10.0.0.1"))
    other, other_reply = in_thread(lambda: post(client, kind, b'[{"message":"other client"}]', peer="10.0.0.2"))
    assert sink.entered.acquire(timeout=5)  # another client is served meanwhile
    sink.release.set()
    first.join(10)
    other.join(10)
    assert (first_reply[0].status, other_reply[0].status) == (202, 202)
    assert post(client, kind, b'[{"message":"again"}]', peer="10.0.0.1").status == 202
    assert admission.clients == {}  # no entry is kept for a client with nothing in flight


def test_behind_a_trusted_proxy_the_forwarded_client_counts(adapter):
    from ingest_mw import RateLimit

    admission = Admission(max_requests_per_client=1)
    sink = GateSink()
    rate_limit = RateLimit(limit="1000/minute", trusted_proxies=["127.0.0.0/8"])
    api = BetterStackAPI([TOKEN], rate_limit=rate_limit, admission=admission)
    client = make_client(adapter, api, sink)
    first, first_reply = in_thread(lambda: post(client, "betterstack", b"{}", {"X-Forwarded-For": "203.0.113.7"}))
    assert sink.entered.acquire(timeout=5)
    # The same proxy, another client behind it: served.
    second, second_reply = in_thread(lambda: post(client, "betterstack", b"{}", {"X-Forwarded-For": "203.0.113.8"}))
    assert sink.entered.acquire(timeout=5)
    refused = post(client, "betterstack", b"{}", {"X-Forwarded-For": "203.0.113.7"})
    sink.release.set()
    first.join(10)
    second.join(10)
    assert refused.status == 503
    assert (first_reply[0].status, second_reply[0].status) == (202, 202)


def test_refusals_are_logged_once_per_interval_with_their_count(adapter, caplog):
    admission = Admission(max_requests=1, log_interval=60)
    sink = GateSink()
    client = make_client(adapter, api_of("betterstack", admission), sink)
    first, _ = in_thread(lambda: post(client, "betterstack", b"{}"))
    assert sink.entered.acquire(timeout=5)
    with caplog.at_level(logging.WARNING, logger="ingest_mw"):
        for _ in range(20):
            assert post(client, "betterstack", b"{}").status == 503
    sink.release.set()
    first.join(10)
    lines = [r.getMessage() for r in caplog.records if "max_requests" in r.getMessage()]
    assert len(lines) == 1, lines


#: Bodies of other requests in flight, standing for them: what a test takes
#: of the byte budget before it posts.
HELD_ELSEWHERE = 600 * 1024


def on_a_mib_budget(adapter, kind: str):
    """An admission of a 1 MiB byte budget, and a client of the ``kind`` API under it, storing into a sink."""
    admission = Admission(max_body_bytes_in_flight=1024 * 1024)
    sink = MemorySink()
    return admission, sink, make_client(adapter, api_of(kind, admission), sink)


def events_of(count: int) -> bytes:
    """A JSON array of ``count`` events of about 1 KiB each."""
    return b"[" + b",".join([b'{"message":"' + b"x" * 1000 + b'"}'] * count) + b"]"


@pytest.mark.parametrize("kind", KINDS)
def test_a_body_past_the_byte_budget_is_refused_before_it_is_read(adapter, kind):
    admission, sink, client = on_a_mib_budget(adapter, kind)
    body = events_of(600)  # within the budget, not within what is left of it
    assert admission.body_bytes.take(HELD_ELSEWHERE)
    refused = post(client, kind, body)
    unavailable_in_style(kind, refused)
    assert refused.headers["connection"] == "close"
    assert sink.batches == []
    admission.body_bytes.give(HELD_ELSEWHERE)  # the others are done: the same body is admitted
    assert post(client, kind, body).status == 202
    assert admission.body_bytes.used == 0  # every request gave back what it took


@pytest.mark.parametrize("kind", KINDS)
def test_a_body_larger_than_the_whole_byte_budget_is_413_not_503(adapter, kind):
    """No wait would admit it: a 503 would have the client retry it for ever."""
    admission, sink, client = on_a_mib_budget(adapter, kind)
    refused = post(client, kind, events_of(1500))  # under the API's limit, over the whole budget
    assert refused.status == 413 and "retry-after" not in refused.headers
    assert refused.headers["x-size-limit"] == "1088 KiB"
    detail = refused.body.decode() if kind == "betterstack" else orjson.loads(refused.body)["detail"]
    assert detail == (
        "the request body is over 1088 KiB, the most this server holds in flight at once"
        " (max_body_bytes_in_flight): send smaller requests"
    )
    assert sink.batches == [] and admission.body_bytes.used == 0
    # Arriving without a Content-Length (gzip, expanding), it is the same 413 as it passes the budget.
    expands = gzip.compress(b'[{"message":"' + b"x" * (3 * 1024 * 1024) + b'"}]')
    refused = post(client, kind, expands, {"Content-Encoding": "gzip"})
    assert refused.status == 413 and "retry-after" not in refused.headers
    assert sink.batches == [] and admission.body_bytes.used == 0


def test_a_small_gzip_that_expands_past_the_budget_is_refused_as_it_arrives(adapter):
    admission, sink, client = on_a_mib_budget(adapter, "betterstack")
    expands = gzip.compress(b'[{"message":"' + b"x" * (600 * 1024) + b'"}]')
    assert len(expands) < 64 * 1024  # declared small: admitted, then charged as it decompresses
    assert admission.body_bytes.take(HELD_ELSEWHERE)
    refused = post(client, "betterstack", expands, {"Content-Encoding": "gzip"})
    unavailable_in_style("betterstack", refused)
    assert sink.batches == []
    assert admission.body_bytes.used == HELD_ELSEWHERE


@pytest.mark.parametrize("kind", KINDS)
def test_a_batch_that_cannot_reach_the_storage_hook_in_time_gets_503_unstored(adapter, kind):
    admission = Admission(max_concurrent_stores=1, max_storage_waiting=1, storage_wait=1.0)
    sink = GateSink()
    client = make_client(adapter, api_of(kind, admission), sink)
    first, first_reply = in_thread(lambda: post(client, kind, b'[{"message":"inside"}]'))
    assert sink.entered.acquire(timeout=5)
    waiting, waiting_reply = in_thread(lambda: post(client, kind, b'[{"message":"waits"}]'))
    deadline = time.monotonic() + 5
    while admission.storage_waiting.in_use == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # until the second batch waits for the hook
    started = time.monotonic()
    no_room = post(client, kind, b'[{"message":"no room to wait"}]')
    assert time.monotonic() - started < 0.6  # the one waiting place is taken: at once, not after storage_wait
    unavailable_in_style(kind, no_room)
    waiting.join(5)
    unavailable_in_style(kind, waiting_reply[0])  # after storage_wait, never handed to the hook
    sink.release.set()
    first.join(10)
    assert first_reply[0].status == 202
    assert [e.data["message"] for e in sink.events] == ["inside"]
    assert "connection" not in no_room.headers  # the body was read: the connection may stay


# --- event caps ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_more_events_than_the_cap_is_413_naming_it(adapter, kind):
    sink = MemorySink()
    client = make_client(adapter, api_of(kind, max_events=5), sink)
    assert post(client, kind, orjson.dumps([{"n": i} for i in range(5)])).status == 202
    reply = post(client, kind, orjson.dumps([{"n": i} for i in range(6)]))
    assert reply.status == 413
    text = reply.body.decode()
    assert "at most 5 events per request" in text and "6 events" in text
    if kind == "baselime":
        assert orjson.loads(reply.body)["message"] == "Payload Too Large"
    assert len(sink.events) == 5


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-ndjson", b"\n".join(b'{"n":%d}' % i for i in range(6))),
        ("application/msgpack", msgpack.packb([{"n": i} for i in range(6)])),  # a fixarray: counted after
        ("application/msgpack", b"\xdc\x00\x06" + msgpack.packb({"n": 1}) * 6),  # array16: its header says 6
        ("application/msgpack", b"\xdd\xff\xff\xff\xff"),  # four billion, by its header: refused unread
    ],
)
def test_every_better_stack_format_counts_against_the_cap(adapter, content_type, body):
    sink = MemorySink()
    client = make_client(adapter, api_of("betterstack", max_events=5), sink)
    reply = post(client, "betterstack", body, {"Content-Type": content_type})
    assert reply.status == 413 and b"at most 5 events per request" in reply.body
    assert sink.batches == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        # One event holding a thousand objects: past 16 per allowed event (80 here).
        ("application/json", orjson.dumps([{"list": [{}] * 1000}])),
        # A MessagePack body over 64 KiB of tiny maps: counted as they are built.
        ("application/msgpack", msgpack.packb([{"list": [{}] * 70_000}])),
    ],
)
def test_bodies_of_tiny_objects_are_refused_before_they_cost_their_decoding(adapter, content_type, body):
    client = make_client(adapter, api_of("betterstack", max_events=5), MemorySink())
    reply = post(client, "betterstack", body, {"Content-Type": content_type})
    assert reply.status == 413
    assert b"at most 80 objects and arrays per request" in reply.body


@pytest.mark.parametrize("kind", KINDS)
def test_an_event_nested_deeper_than_the_cap_is_400_naming_it(adapter, kind):
    sink = MemorySink()
    client = make_client(adapter, api_of(kind, max_depth=3), sink)
    assert post(client, kind, b'[{"a":{"b":{"c":1}}}]').status == 202  # three levels
    reply = post(client, kind, b'[{"a":{"b":[{"c":1}]}}]')  # four
    assert reply.status == 400
    assert "deeper than 3 levels (max_depth)" in reply.body.decode()
    assert len(sink.events) == 1


# --- HTTP framing ---------------------------------------------------------------------
def environ_with(headers: dict[str, str], body: bytes) -> dict:
    import io

    environ = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": f"{PREFIX}/",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "REMOTE_ADDR": "127.0.0.1",
    }
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    return environ


def raw_request(adapter: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request as a server would hand it over, headers exactly as given."""
    api = api_of("betterstack")
    sink = MemorySink()
    if adapter == "wsgi":
        app = WSGIMiddleware(lambda e, s: [], api, sink=sink, prefix=PREFIX)
        started: list = []
        chunks = app(environ_with(headers, body), lambda status, hs, exc=None: started.append((status, hs)))
        status, response_headers = started[0]
        return int(status.split()[0]), {k.lower(): v for k, v in response_headers}, b"".join(chunks)

    async def host(scope, receive, send):
        raise AssertionError("not the host's")

    app = ASGIMiddleware(host, api, sink=sink, prefix=PREFIX)
    sent: list = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": f"{PREFIX}/",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
    }
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return (
        start["status"],
        {k.decode(): v.decode() for k, v in start["headers"]},
        b"".join(m.get("body", b"") for m in sent[1:]),
    )


def test_content_length_with_transfer_encoding_is_400(adapter):
    status, headers, body = raw_request(
        adapter, {**JSON_BS, "Content-Length": "2", "Transfer-Encoding": "chunked"}, b"{}"
    )
    assert status == 400
    assert b"Content-Length and Transfer-Encoding together" in body
    assert headers["connection"] == "close"


def test_conflicting_content_lengths_are_400(adapter):
    status, _, body = raw_request(adapter, {**JSON_BS, "Content-Length": "2, 3"}, b"{}")
    assert status == 400
    assert b"conflicting Content-Length" in body


def test_a_request_with_a_body_and_a_wrong_token_closes_the_connection(adapter):
    status, headers, _ = raw_request(
        adapter, {**JSON_BS, "Authorization": "Bearer wrong", "Content-Length": "2"}, b"{}"
    )
    assert status == 403
    assert headers["connection"] == "close"
    status, headers, _ = raw_request(adapter, {**JSON_BS, "Content-Length": "2"}, b"{}")
    assert status == 202 and "connection" not in headers


# --- a body that stalls (ASGI: the WSGI server's own socket timeout applies there) -------
def stalled_body(api, path: str, headers: dict[str, str], first_chunk: bytes) -> tuple[list, float, MemorySink]:
    """``api`` under ASGI sent ``first_chunk`` of a 100-byte body, then nothing:
    the messages it sent, the seconds it took, its sink."""
    sink = MemorySink()
    app = ASGIMiddleware(lambda s, r, se: None, api, sink=sink, prefix=PREFIX)
    sent: list = []
    first = [{"type": "http.request", "body": first_chunk, "more_body": True}]

    async def receive():
        if first:
            return first.pop()
        await asyncio.sleep(30)  # stalls
        raise AssertionError("not timed out")

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in {**headers, "content-length": "100"}.items()],
        "client": ("127.0.0.1", 1),
    }
    started = time.monotonic()
    asyncio.run(app(scope, receive, send))
    return sent, time.monotonic() - started, sink


@pytest.mark.parametrize("kind", KINDS)
def test_a_body_that_sends_nothing_for_the_idle_timeout_is_408_and_closed(kind):
    api = api_of(kind, Admission(body_idle_timeout=0.2))
    path = f"{PREFIX}/" if kind == "betterstack" else f"{PREFIX}/v1/logs"
    headers = JSON_BS if kind == "betterstack" else JSON_BL
    sent, elapsed, sink = stalled_body(api, path, headers, b'[{"message":')
    assert elapsed < 2
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    assert sink.batches == []


def test_an_otlp_body_that_stalls_is_408_deadline_exceeded():
    from google.rpc.status_pb2 import Status

    from ingest_mw import OTLPLogsAPI

    api = OTLPLogsAPI([TOKEN], admission=Admission(body_idle_timeout=0.2))
    protobuf = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-protobuf"}
    sent, elapsed, sink = stalled_body(api, f"{PREFIX}/v1/logs", protobuf, b"\x0a\x05")
    assert elapsed < 2
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    status = Status.FromString(sent[1]["body"])
    assert status.code == 4  # DEADLINE_EXCEEDED: the body did not arrive in time
    assert "sent nothing for 0.2s" in status.message
    assert sink.batches == []


def test_admission_options_are_checked_when_made():
    with pytest.raises(ValueError, match="max_requests = 0: give a positive whole number"):
        Admission(max_requests=0)
    with pytest.raises(ValueError, match="storage_wait = -1"):
        Admission(storage_wait=-1)
    with pytest.raises(ValueError, match="max_events = 0"):
        BetterStackAPI([TOKEN], max_events=0)


def test_otlp_is_admitted_like_the_others_and_refused_in_its_own_encoding(adapter):
    from google.rpc.status_pb2 import Status
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    from ingest_mw import OTLPLogsAPI

    admission = Admission(max_body_bytes_in_flight=1024 * 1024)
    sink = MemorySink()
    client = make_client(adapter, OTLPLogsAPI([TOKEN], admission=admission), sink)
    export = ExportLogsServiceRequest()
    record = LogRecord(time_unix_nano=1_796_130_000_000_000_000)
    record.body.string_value = "x" * (600 * 1024)  # within the budget, not within what is left of it
    export.resource_logs.add().scope_logs.add().log_records.append(record)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-protobuf"}
    assert admission.body_bytes.take(HELD_ELSEWHERE)
    refused = client.request("POST", f"{PREFIX}/v1/logs", export.SerializeToString(), headers)
    assert (refused.status, refused.headers["retry-after"], refused.headers["connection"]) == (503, "1", "close")
    assert Status.FromString(refused.body).code == 14  # UNAVAILABLE: exporters retry it
    assert sink.batches == []


def test_otlp_records_past_the_cap_are_refused_before_they_are_all_mapped(adapter):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

    from ingest_mw import OTLPLogsAPI

    sink = MemorySink()
    client = make_client(adapter, OTLPLogsAPI([TOKEN], max_events=5), sink)
    export = ExportLogsServiceRequest()
    export.resource_logs.add().scope_logs.add().log_records.extend(LogRecord() for _ in range(6))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-protobuf"}
    refused = client.request("POST", f"{PREFIX}/v1/logs", export.SerializeToString(), headers)
    assert refused.status == 413
    assert sink.batches == []


def test_a_sync_hook_takes_as_many_batches_at_once_as_the_admission_lets_in():
    # 100 stores allowed at once, past the 64 threads sync hooks get by default:
    # all 100 are inside the hook together (each waits for the others at a barrier).
    stores = 100
    inside = threading.Barrier(stores, timeout=20)

    class Together(MemorySink):
        def __call__(self, batch):
            inside.wait()
            super().__call__(batch)

    sink = Together()
    admission = Admission(max_concurrent_stores=stores, max_requests_per_client=0)
    app = ASGIApp(BetterStackAPI([TOKEN], admission=admission, rate_limit=None), sink=sink)
    body = b'{"message": "together"}'
    scope = mounted_post_scope({"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})

    async def one() -> int:
        sent = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        await app(dict(scope), receive, send)
        return sent[0]["status"]

    async def all_at_once():
        return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(stores))), 30)

    assert asyncio.run(all_at_once()) == [202] * stores
    assert len(sink.events) == stores


# --- waiting in line for a slot ------------------------------------------------------
def test_slots_serve_those_who_wait_in_their_order_and_newcomers_after_them(monkeypatch):
    # No look again on a timer: a waiter gets its slot only by being woken.
    monkeypatch.setattr(admission_module, "RECHECK_SECONDS", 30.0)
    slots = Slots(1)
    assert slots.take()
    served: list[int] = []
    lined_up = threading.Semaphore(0)

    def wait_in_line(number: int) -> None:
        flow = slots.wait(counted_wakeup(lined_up), time.monotonic() + 20)
        assert run_until_done(flow)
        served.append(number)
        slots.give()

    threads = []
    for number in range(3):
        thread = threading.Thread(target=wait_in_line, args=(number,))
        thread.start()
        assert lined_up.acquire(timeout=5)  # in line before the next one comes
        threads.append(thread)
    assert slots.waiting == 3
    assert not slots.take()  # a newcomer does not pass those who wait
    slots.give()
    for thread in threads:
        thread.join(10)
    assert served == [0, 1, 2]
    assert slots.waiting == 0 and slots.in_use == 0
    assert slots.take()  # nobody waits: taken at once again


def counted_wakeup(lined_up: threading.Semaphore):
    """A thread's alarm that says when its owner has lined up."""

    def make() -> ThreadWakeup:
        lined_up.release()
        return ThreadWakeup()

    return make


def run_until_done(flow):
    try:
        flow.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("a thread's wait suspended")


def test_a_slot_given_back_on_the_loop_or_from_a_thread_wakes_the_first_waiter_at_once(monkeypatch):
    monkeypatch.setattr(admission_module, "RECHECK_SECONDS", 30.0)
    slots = Slots(1)

    async def main() -> list[str]:
        assert slots.take()
        order: list[str] = []

        async def waiter(name: str) -> None:
            assert await slots.wait(LoopWakeup, time.monotonic() + 20)
            order.append(name)

        first = asyncio.create_task(waiter("first"))
        await asyncio.sleep(0)
        second = asyncio.create_task(waiter("second"))
        await asyncio.sleep(0)
        assert slots.waiting == 2
        slots.give()  # on the loop
        await asyncio.wait_for(first, 5)
        await asyncio.to_thread(slots.give)  # from another thread, as a WSGI request of the same admission
        await asyncio.wait_for(second, 5)
        return order

    assert asyncio.run(main()) == ["first", "second"]


def test_a_waiter_past_its_deadline_leaves_the_line_and_passes_the_slot_on(monkeypatch):
    monkeypatch.setattr(admission_module, "RECHECK_SECONDS", 30.0)
    slots = Slots(1)

    async def main() -> tuple[bool, bool]:
        assert slots.take()
        late = asyncio.create_task(slots.wait(LoopWakeup, time.monotonic() + 0.2))
        await asyncio.sleep(0)
        patient = asyncio.create_task(slots.wait(LoopWakeup, time.monotonic() + 20))
        await asyncio.sleep(0)
        gave_up = await asyncio.wait_for(late, 5)
        slots.give()
        return gave_up, await asyncio.wait_for(patient, 5)

    assert asyncio.run(main()) == (False, True)
    assert slots.waiting == 0


@pytest.mark.parametrize("kind", KINDS)
def test_batches_waiting_for_the_storage_hook_are_stored_in_the_order_they_came(adapter, kind, monkeypatch):
    monkeypatch.setattr(admission_module, "RECHECK_SECONDS", 30.0)
    admission = Admission(max_concurrent_stores=1, storage_wait=20.0, max_requests_per_client=0)
    sink = GateSink()
    client = make_client(adapter, api_of(kind, admission), sink)
    first, first_reply = in_thread(lambda: post(client, kind, b'[{"message":"0"}]'))
    assert sink.entered.acquire(timeout=5)
    waiting = []
    for number in range(1, 4):
        waiting.append(in_thread(lambda number=number: post(client, kind, b'[{"message":"%d"}]' % number)))
        deadline = time.monotonic() + 5
        while admission.stores.waiting < number and time.monotonic() < deadline:
            time.sleep(0.01)  # in line before the next one comes
        assert admission.stores.waiting == number
    sink.release.set()
    for thread, _ in [(first, first_reply), *waiting]:
        thread.join(10)
    assert [reply[0].status for _, reply in [(first, first_reply), *waiting]] == [202] * 4
    assert [e.data["message"] for e in sink.events] == ["0", "1", "2", "3"]


def waiter_on_a_loop_closed_while_it_waits(slots: Slots) -> None:
    """A request waiting in line on an event loop that is then closed under it
    (a host's loop torn down with requests pending): its alarm can no longer be
    woken, and its own clean-up never runs."""
    loop = asyncio.new_event_loop()

    async def wait() -> None:
        await slots.wait(LoopWakeup, time.monotonic() + 60)

    task = loop.create_task(wait())
    loop.run_until_complete(asyncio.sleep(0.01))  # in line
    assert slots.waiting == 1 and not task.done()
    loop.close()


def test_a_waiter_whose_loop_closed_holds_up_nobody(monkeypatch):
    monkeypatch.setattr(admission_module, "RECHECK_SECONDS", 30.0)
    slots = Slots(1)
    assert slots.take()
    waiter_on_a_loop_closed_while_it_waits(slots)
    slots.give()  # it cannot be handed the slot: the slot goes on
    assert slots.waiting == 0
    started = time.monotonic()
    assert run_until_done(slots.wait(ThreadWakeup, time.monotonic() + 20))  # a WSGI request gets the slot
    assert time.monotonic() - started < 5
    gc.collect()  # the abandoned request's coroutine is closed: it gives back nothing it does not hold
    assert slots.in_use == 1 and not slots.take()
    slots.give()
    assert slots.in_use == 0 and slots.take() and not slots.take()


def test_slots_given_back_together_are_handed_to_as_many_waiters_at_once():
    slots = Slots(8)

    async def main() -> tuple[int, int, bool]:
        for _ in range(8):
            assert slots.take()
        waiters = [asyncio.create_task(slots.wait(LoopWakeup, time.monotonic() + 20)) for _ in range(20)]
        await asyncio.sleep(0)
        assert slots.waiting == 20
        for _ in range(8):
            slots.give()  # a group of eight stored at once
        await asyncio.sleep(0)  # one turn of the loop
        served = sum(task.done() for task in waiters)
        newcomer = slots.take()  # twelve still wait: no passing them
        for _ in range(20):
            slots.give()
        await asyncio.wait_for(asyncio.gather(*waiters), 5)
        return served, slots.waiting, newcomer

    assert asyncio.run(main()) == (8, 0, False)
