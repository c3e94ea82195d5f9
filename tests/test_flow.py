"""The sans-I/O request flow, stepped by hand with plain values (no adapter, no driver).

What an adapter author relies on: which steps a request asks for, in which
order, and what the flow answers when a step's work fails.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from ingest_mw import BetterStackAPI
from ingest_mw.api import OFFLOAD_BYTES, Decode, ReadBody, Request, Store
from ingest_mw.drive import ClientDisconnected, drive_async, drive_sync
from ingest_mw.errors import IngestError

TOKEN = "t0ken"


def start(api: BetterStackAPI, body: bytes):
    """A flow for a POST of ``body`` (its Content-Length declared) to the API's root, and its first step."""
    headers = {
        "authorization": f"Bearer {TOKEN}",
        "content-type": "application/json",
        "content-length": str(len(body)),
    }
    route = api.match("/")
    assert route is not None
    flow = api.handle(Request("POST", "/", headers, "127.0.0.1"), route)
    return flow, next(flow)


def padded(size: int) -> bytes:
    """A one-event JSON body of exactly ``size`` bytes."""
    body = orjson.dumps({"message": "a"})
    return body + b" " * (size - len(body))


def finish(flow, value=None):
    """Send ``value`` in and return the flow's response (it must ask for nothing more)."""
    with pytest.raises(StopIteration) as stop:
        flow.send(value)
    return stop.value.value


def test_a_small_body_asks_to_be_read_then_stored():
    api = BetterStackAPI({"web": TOKEN}, rate_limit=None)
    body = orjson.dumps([{"message": "a"}, {"message": "b"}])
    flow, step = start(api, body)

    assert isinstance(step, ReadBody)
    step.reader.feed(body[:5])
    step.reader.feed(body[5:])
    step = flow.send(None)  # decoded inside the flow: no Decode step for a small body

    assert isinstance(step, Store)
    assert (step.batch.api, step.batch.source, step.batch.client) == ("betterstack", "web", "127.0.0.1")
    assert [event.data for event in step.batch.events] == [{"message": "a"}, {"message": "b"}]
    response = finish(flow)
    assert (response.status, response.body) == (202, b"")


def test_a_refused_credential_is_answered_before_the_body_is_asked_for():
    api = BetterStackAPI({"web": TOKEN}, rate_limit=None)
    flow = api.handle(Request("POST", "/", {"authorization": "Bearer nope"}), api.match("/"))  # type: ignore[arg-type]
    with pytest.raises(StopIteration) as stop:
        next(flow)
    assert (stop.value.value.status, stop.value.value.body) == (403, b"Unauthorized")


def test_a_refusal_from_the_reader_thrown_back_in_is_the_apis_413():
    api = BetterStackAPI([TOKEN], max_body_bytes=10, rate_limit=None)
    flow, step = start(api, b"")  # (sent chunked: no Content-Length to refuse it by)
    assert isinstance(step, ReadBody)
    with pytest.raises(IngestError) as refused:
        step.reader.feed(b"x" * 11)  # the driver stops reading here ...
    with pytest.raises(StopIteration) as stop:
        flow.throw(refused.value)  # ... and throws the refusal back in
    assert (stop.value.value.status, stop.value.value.body) == (413, b"payload reached size limit")


def test_only_a_body_over_the_offload_size_is_a_decode_step():
    api = BetterStackAPI([TOKEN], max_body_bytes=4 * OFFLOAD_BYTES, rate_limit=None)
    count = OFFLOAD_BYTES // 1000 + 1
    body = orjson.dumps([{"message": "x" * 1000}] * count)
    assert len(body) > OFFLOAD_BYTES
    flow, step = start(api, body)
    step.reader.feed(body)

    step = flow.send(None)
    assert isinstance(step, Decode)  # an async driver runs it in a worker thread
    step = flow.send(step.work())
    assert isinstance(step, Store) and len(step.batch.events) == count
    assert finish(flow).status == 202


@pytest.mark.parametrize(("size", "decode_step"), [(OFFLOAD_BYTES, False), (OFFLOAD_BYTES + 1, True)])
def test_the_decode_step_starts_just_past_the_offload_size(size, decode_step):
    api = BetterStackAPI([TOKEN], max_body_bytes=2 * OFFLOAD_BYTES, rate_limit=None)
    body = padded(size)
    flow, step = start(api, body)
    step.reader.feed(body)
    step = flow.send(None)
    assert isinstance(step, Decode) is decode_step
    if decode_step:
        step = flow.send(step.work())
    assert isinstance(step, Store) and [event.data for event in step.batch.events] == [{"message": "a"}]


def test_a_storage_failure_thrown_back_in_is_a_500_and_a_log_line(caplog):
    api = BetterStackAPI([TOKEN], rate_limit=None)
    flow, step = start(api, b'{"message": "a"}')
    step.reader.feed(b'{"message": "a"}')
    step = flow.send(None)
    assert isinstance(step, Store)
    with caplog.at_level(logging.ERROR, logger="ingest_mw"), pytest.raises(StopIteration) as stop:
        flow.throw(OSError("disk full"))
    assert stop.value.value.status == 500
    assert "1 betterstack events from source 'default' not acknowledged" in caplog.text


# --- the request ----------------------------------------------------------------------


def test_a_request_is_received_now_in_utc_with_no_params_until_routed():
    before = datetime.now(timezone.utc)
    request = Request("POST", "/", {})
    assert before <= request.received_at <= datetime.now(timezone.utc)
    assert request.received_at.utcoffset() == timedelta(0)
    assert dict(request.params) == {}
    with pytest.raises(TypeError):  # shared by every request until the flow routes it
        request.params["dataset"] = "x"  # type: ignore[index]
    at = datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert Request("POST", "/", {}, received_at=at).received_at is at


def test_time_frozen_in_the_api_module_freezes_the_reception_time(monkeypatch):
    """What freezegun does: it replaces ``datetime`` in every loaded module."""
    frozen = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return frozen

    monkeypatch.setattr("ingest_mw.api.datetime", FrozenDatetime)
    assert Request("POST", "/", {}).received_at == frozen


# --- the drivers ----------------------------------------------------------------------


NDJSON_HEADERS = {"authorization": f"Bearer {TOKEN}", "content-type": "application/x-ndjson"}


def body_then(end):
    """A ``read_body`` that feeds two NDJSON lines, then calls ``end``."""

    def read_body(feed):
        feed(b'{"message": "a"}\n{"message": "b"}\n')
        end()

    return read_body


def disconnect():
    raise ClientDisconnected


def test_a_disconnect_while_reading_ends_the_sync_drive_with_the_flow_closed():
    api = BetterStackAPI([TOKEN], rate_limit=None)
    stored = []
    flow = api.handle(Request("POST", "/", NDJSON_HEADERS), {})
    with pytest.raises(ClientDisconnected):
        drive_sync(flow, body_then(disconnect), stored.append)
    assert stored == []
    assert inspect.getgeneratorstate(flow) == inspect.GEN_CLOSED


def test_a_disconnect_while_reading_ends_the_async_drive_and_stores_nothing():
    api = BetterStackAPI([TOKEN], rate_limit=None)
    stored = []
    read_half = body_then(disconnect)

    async def read_body(feed):
        read_half(feed)

    async def store(batch):
        stored.append(batch)

    flow = api.handle(Request("POST", "/", NDJSON_HEADERS), {})
    with pytest.raises(ClientDisconnected):
        asyncio.run(drive_async(flow, read_body, store))
    assert stored == []
    assert inspect.getgeneratorstate(flow) == inspect.GEN_CLOSED


def test_a_hook_raising_client_disconnected_is_a_failed_hook_not_a_disconnect(caplog):
    api = BetterStackAPI([TOKEN], rate_limit=None)
    flow = api.handle(Request("POST", "/", NDJSON_HEADERS), {})
    with caplog.at_level(logging.ERROR, logger="ingest_mw"):
        response = drive_sync(flow, body_then(lambda: None), lambda batch: disconnect())
    assert response.status == 500
    assert "not acknowledged" in caplog.text
