"""The request flow, run with plain values by an I/O double that records what it is asked.

What an adapter author relies on: which I/O a request asks for, in which
order, and what the flow answers when that I/O fails.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from ingest_mw import BetterStackAPI
from ingest_mw.admission import Admission
from ingest_mw.api import OFFLOAD_BYTES, Request
from ingest_mw.drive import AsyncIO, ClientDisconnected, SyncIO, run_sync
from ingest_mw.sinks import BatchRefused, SinkUnavailable

TOKEN = "t0ken"


class RecordingIO:
    """A ``RequestIO`` doing its work with plain values, in the calling thread,
    and recording what the flow asked for in :attr:`asked`."""

    def __init__(self, *chunks: bytes, store_fails: Exception | None = None) -> None:
        self.chunks = chunks
        self.store_fails = store_fails
        self.asked: list[str] = []
        self.batches: list = []

    async def read_body(self, feed):
        self.asked.append("read_body")
        for chunk in self.chunks:
            feed(chunk)

    async def hit(self, rate_limit, request):
        self.asked.append("hit")
        return rate_limit.hit(request)

    async def offload(self, work):
        self.asked.append("offload")
        return work()

    async def store(self, batch):
        self.asked.append("store")
        if self.store_fails is not None:
            raise self.store_fails
        self.batches.append(batch)


def post(api: BetterStackAPI, io: RecordingIO, *, declared: int | None = None, token: str = TOKEN):
    """The response to a POST to the API's root (``declared``: its Content-Length, if any)."""
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    if declared is not None:
        headers["content-length"] = str(declared)
    route = api.match("/")
    assert route is not None
    return run_sync(api.handle(Request("POST", "/", headers, "127.0.0.1"), route, io))


def padded(size: int) -> bytes:
    """A one-event JSON body of exactly ``size`` bytes."""
    body = orjson.dumps({"message": "a"})
    return body + b" " * (size - len(body))


def test_a_small_body_is_read_decoded_in_the_flow_then_stored():
    api = BetterStackAPI({"web": TOKEN}, rate_limit=None)
    body = orjson.dumps([{"message": "a"}, {"message": "b"}])
    io = RecordingIO(body[:5], body[5:])

    response = post(api, io, declared=len(body))

    assert (response.status, response.body) == (202, b"")
    assert io.asked == ["read_body", "store"]  # no offload for a small body
    (batch,) = io.batches
    assert (batch.api, batch.source, batch.client) == ("betterstack", "web", "127.0.0.1")
    assert [event.data for event in batch.events] == [{"message": "a"}, {"message": "b"}]


def test_a_refused_credential_is_answered_before_the_body_is_asked_for():
    api = BetterStackAPI({"web": TOKEN}, rate_limit=None)
    io = RecordingIO(b'{"message": "a"}')
    response = post(api, io, token="nope")
    assert (response.status, response.body) == (403, b"Unauthorized")
    assert io.asked == []


def test_the_rate_limit_is_hit_before_the_body_is_asked_for():
    api = BetterStackAPI([TOKEN], rate_limit="1/minute")
    first, second = RecordingIO(b'{"message": "a"}'), RecordingIO(b'{"message": "b"}')
    assert post(api, first).status == 202
    assert first.asked == ["hit", "read_body", "store"]
    response = post(api, second)
    assert response.status == 429
    assert second.asked == ["hit"]
    assert "Retry-After" in dict(response.headers)


def test_a_refusal_from_the_reader_while_reading_is_the_apis_413():
    api = BetterStackAPI([TOKEN], max_body_bytes=10, rate_limit=None)
    io = RecordingIO(b"x" * 6, b"x" * 6)  # (sent chunked: no Content-Length to refuse it by)
    response = post(api, io)
    assert (response.status, response.body) == (413, b"payload reached size limit")
    assert io.asked == ["read_body"]


def test_only_a_body_over_the_offload_size_is_decoded_through_offload():
    api = BetterStackAPI([TOKEN], max_body_bytes=4 * OFFLOAD_BYTES, rate_limit=None)
    count = OFFLOAD_BYTES // 1000 + 1
    body = orjson.dumps([{"message": "x" * 1000}] * count)
    assert len(body) > OFFLOAD_BYTES
    io = RecordingIO(body)
    assert post(api, io, declared=len(body)).status == 202
    assert io.asked == ["read_body", "offload", "store"]  # an async adapter runs it in a worker thread
    assert len(io.batches[0].events) == count


@pytest.mark.parametrize(("size", "offloaded"), [(OFFLOAD_BYTES, False), (OFFLOAD_BYTES + 1, True)])
def test_offloading_starts_just_past_the_offload_size(size, offloaded):
    api = BetterStackAPI([TOKEN], max_body_bytes=2 * OFFLOAD_BYTES, rate_limit=None)
    io = RecordingIO(padded(size))
    assert post(api, io, declared=size).status == 202
    assert ("offload" in io.asked) is offloaded
    assert [event.data for event in io.batches[0].events] == [{"message": "a"}]


def test_a_storage_failure_is_a_500_and_a_log_line(caplog):
    api = BetterStackAPI([TOKEN], rate_limit=None)
    io = RecordingIO(b'{"message": "a"}', store_fails=OSError("disk full"))
    with caplog.at_level(logging.ERROR, logger="ingest_mw"):
        response = post(api, io)
    assert response.status == 500
    assert "1 betterstack events from source 'default' not acknowledged" in caplog.text
    assert caplog.records[-1].exc_info is not None  # a hook's own failure: its traceback


def test_a_storage_outage_is_a_503_to_retry_later_and_one_line(caplog):
    # A sink that cannot store now (SinkUnavailable: a disk full, a database down)
    # gets the 503 that shippers retry, after the admission's Retry-After.
    api = BetterStackAPI([TOKEN], rate_limit=None, admission=Admission(retry_after=7))
    io = RecordingIO(b'{"message": "a"}', store_fails=SinkUnavailable("SQLite sink /x.db: disk I/O error"))
    with caplog.at_level(logging.WARNING, logger="ingest_mw"):
        response = post(api, io)
    assert (response.status, dict(response.headers).get("Retry-After")) == (503, "7")
    assert [record.getMessage().split(" (")[0] for record in caplog.records] == [
        "ingest_mw: SQLite sink /x.db: disk I/O error; 1 betterstack events from source 'default' not acknowledged"
    ]
    assert caplog.records[0].exc_info is None


def test_a_batch_the_storage_refuses_for_its_own_values_is_a_500_not_retried(caplog):
    api = BetterStackAPI([TOKEN], rate_limit=None)
    io = RecordingIO(b'{"message": "a"}', store_fails=BatchRefused("PostgreSQL sink x (table t): violates check"))
    with caplog.at_level(logging.ERROR, logger="ingest_mw"):
        response = post(api, io)
    assert (response.status, dict(response.headers).get("Retry-After")) == (500, None)
    assert [record.getMessage() for record in caplog.records] == [
        "ingest_mw: PostgreSQL sink x (table t): violates check;"
        " 1 betterstack events from source 'default' not acknowledged"
    ]
    assert caplog.records[0].exc_info is None


# --- the request ----------------------------------------------------------------------


def test_a_request_is_received_now_in_utc_with_no_params_until_routed():
    before = datetime.now(UTC)
    request = Request("POST", "/", {})
    assert before <= request.received_at <= datetime.now(UTC)
    assert request.received_at.utcoffset() == timedelta(0)
    assert dict(request.params) == {}
    with pytest.raises(TypeError):  # shared by every request until the flow routes it
        request.params["dataset"] = "x"  # type: ignore[index]
    at = datetime(2024, 5, 1, tzinfo=UTC)
    assert Request("POST", "/", {}, received_at=at).received_at is at


def test_time_frozen_in_the_api_module_freezes_the_reception_time(monkeypatch):
    """What freezegun does: it replaces ``datetime`` in every loaded module."""
    frozen = datetime(2024, 5, 1, 12, tzinfo=UTC)

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return frozen

    monkeypatch.setattr("ingest_mw.api.datetime", FrozenDatetime)
    assert Request("POST", "/", {}).received_at == frozen


# --- the adapters' I/O -----------------------------------------------------------------


NDJSON_HEADERS = {"authorization": f"Bearer {TOKEN}", "content-type": "application/x-ndjson"}


def body_then(end):
    """A ``read_body`` that feeds two NDJSON lines, then calls ``end``."""

    def read_body(feed):
        feed(b'{"message": "a"}\n{"message": "b"}\n')
        end()

    return read_body


def disconnect():
    raise ClientDisconnected


def test_a_disconnect_while_reading_ends_the_sync_flow_with_nothing_stored():
    api = BetterStackAPI([TOKEN], rate_limit=None)
    stored = []
    flow = api.handle(Request("POST", "/", NDJSON_HEADERS), {}, SyncIO(body_then(disconnect), stored.append))
    with pytest.raises(ClientDisconnected):
        run_sync(flow)
    assert stored == []


def test_client_disconnected_from_other_io_than_reading_is_a_500(caplog):
    """Only the body's reader can tell that the client has gone: the same
    exception from the rate limit's storage is a failure to answer for."""
    api = BetterStackAPI([TOKEN], rate_limit="10/minute")

    class LimiterGone(RecordingIO):
        async def hit(self, rate_limit, request):
            raise ClientDisconnected

    with caplog.at_level(logging.ERROR, logger="ingest_mw"):
        response = post(api, LimiterGone(b'{"message": "a"}'))
    assert response.status == 500
    assert "request failed" in caplog.text


def test_a_read_that_fails_otherwise_is_a_500_and_a_log_line(caplog):
    api = BetterStackAPI([TOKEN], rate_limit=None)

    class ReadFails(RecordingIO):
        async def read_body(self, feed):
            raise OSError("connection reset")

    io = ReadFails()
    with caplog.at_level(logging.ERROR, logger="ingest_mw"):
        response = post(api, io)
    assert response.status == 500
    assert io.batches == []
    assert "request failed" in caplog.text


def test_a_disconnect_while_reading_ends_the_async_flow_and_stores_nothing():
    api = BetterStackAPI([TOKEN], rate_limit=None)
    stored = []
    read_half = body_then(disconnect)

    class HalfABody(AsyncIO):
        async def read_body(self, feed):
            await asyncio.sleep(0)  # a real wait on the loop, as for a network read
            read_half(feed)

    async def store(batch):
        stored.append(batch)

    flow = api.handle(Request("POST", "/", NDJSON_HEADERS), {}, HalfABody(store))
    with pytest.raises(ClientDisconnected):
        asyncio.run(flow)
    assert stored == []


def test_the_async_io_runs_offloaded_work_in_a_worker_thread():
    async def store(batch):
        pass

    class NoBody(AsyncIO):
        async def read_body(self, feed):
            pass

    ran_in = asyncio.run(NoBody(store).offload(threading.current_thread))
    assert ran_in is not threading.current_thread()


def test_an_async_flow_stores_a_body_over_the_offload_size():
    api = BetterStackAPI([TOKEN], max_body_bytes=2 * OFFLOAD_BYTES, rate_limit=None)
    body = padded(OFFLOAD_BYTES + 1)
    stored = []

    class WholeBody(AsyncIO):
        async def read_body(self, feed):
            feed(body)

    async def store(batch):
        stored.append([event.data for event in batch.events])

    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    response = asyncio.run(api.handle(Request("POST", "/", headers), {}, WholeBody(store)))
    assert response.status == 202
    assert stored == [[{"message": "a"}]]


def test_a_hook_raising_client_disconnected_is_a_failed_hook_not_a_disconnect(caplog):
    api = BetterStackAPI([TOKEN], rate_limit=None)
    io = SyncIO(body_then(lambda: None), lambda batch: disconnect())
    with caplog.at_level(logging.ERROR, logger="ingest_mw"):
        response = run_sync(api.handle(Request("POST", "/", NDJSON_HEADERS), {}, io))
    assert response.status == 500
    assert "not acknowledged" in caplog.text


def test_an_async_io_must_say_how_it_reads_the_body():
    class NoReader(AsyncIO):
        pass

    with pytest.raises(TypeError):
        NoReader(lambda batch: None)  # type: ignore[abstract]


def test_an_api_still_overriding_metadata_is_refused_at_once():
    with pytest.raises(TypeError, match="override batch"):

        class Old(BetterStackAPI):
            def metadata(self, request):
                return {"dataset": "x"}


def test_run_sync_refuses_io_that_waits():
    api = BetterStackAPI([TOKEN], rate_limit=None)

    class Waits(SyncIO):
        async def read_body(self, feed):
            await asyncio.sleep(0)

    flow = api.handle(Request("POST", "/", NDJSON_HEADERS), {}, Waits(lambda feed: None, lambda batch: None))
    with pytest.raises(RuntimeError, match="SyncIO"):
        run_sync(flow)
    assert inspect.getcoroutinestate(flow) == inspect.CORO_CLOSED


def test_an_observer_of_its_own_kind_is_told_every_hook_by_the_flow_itself():
    # Given to handle() directly (no adapter to wrap it): duck-typed, or an
    # Observer subclass whose hooks are set per instance and that says so.
    from ingest_mw.observe import Observer

    calls: list[object] = []

    class Duck:
        def started(self, seen):
            calls.append("started")
            return "token"

        def received(self, seen, token):
            calls.append(("received", seen.body_bytes, token))

        def finished(self, seen, token):
            calls.append(("finished", seen.status, token))

    class PerInstance(Observer):
        tells_started = tells_received = True

        def __init__(self) -> None:
            self.started = lambda seen: "own"  # type: ignore[method-assign]
            self.received = lambda seen, token: calls.append(("own received", token))  # type: ignore[method-assign]

        def finished(self, seen, token):
            calls.append(("own finished", token))

    class Derived(PerInstance):  # inherits the declaration
        pass

    class Other(Observer):
        def finished(self, seen, token):
            calls.append(("other finished", token))

    class Mixed(Other, PerInstance):  # inherits it from any base
        pass

    assert (Mixed.tells_started, Mixed.tells_received) == (True, True)

    class NoStart(Observer):  # says it needs no started
        tells_started = False

    class Tracer(Observer):
        def started(self, seen):
            return "t"

    class Combined(Tracer, NoStart):  # the nearer class, which defines started, decides
        pass

    class StartsAfterAll(NoStart):  # overrides it again below the declaration
        def started(self, seen):
            return "t"

    assert (Combined.tells_started, StartsAfterAll.tells_started, NoStart.tells_started) == (True, True, False)

    body = b'{"message": "hi"}'
    headers = {"authorization": "Bearer tok", "content-type": "application/json", "content-length": str(len(body))}
    api = BetterStackAPI(["tok"], rate_limit=None)
    for observer in (Duck(), PerInstance(), Derived()):
        flow = api.handle(
            Request("POST", "/", headers, "127.0.0.1"), {}, SyncIO(lambda feed: feed(body), [].append), observer
        )
        assert run_sync(flow).status == 202
    assert calls == [
        "started",
        ("received", len(body), "token"),
        ("finished", 202, "token"),
        ("own received", "own"),
        ("own finished", "own"),
        ("own received", "own"),
        ("own finished", "own"),
    ]


def test_a_duck_typed_observer_that_counts_is_counted_when_given_to_the_flow_itself():
    # No Observer subclass, given to handle() directly: told every hook, and
    # counted into its tallies all the same.
    from ingest_mw.counts import Tallies

    told: list[int] = []

    class Duck:
        def __init__(self) -> None:
            self.tallies = Tallies()

        def started(self, seen):
            return None

        def received(self, seen, token):
            pass

        def finished(self, seen, token):
            told.append(seen.status)

    duck = Duck()
    api = BetterStackAPI([TOKEN])
    io = RecordingIO(orjson.dumps({"message": "hi"}))
    request = Request("POST", "/", {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"})
    response = run_sync(api.handle(request, {}, io, duck))  # type: ignore[arg-type]
    assert response.status == 202 and told == [202] and len(io.batches) == 1
    assert duck.tallies.totals()["betterstack"].requests == {202: 1}
    assert duck.tallies.totals()["betterstack"].events_accepted == 1
