"""Baselime's service and namespace per event: an event's own string fields win
over the x-service/x-namespace headers, in every built-in sink."""

from __future__ import annotations

import json

import orjson
from clients import PREFIX, make_client

from ingest_mw import BaselimeAPI, BetterStackAPI, JSONLinesSink, JSONMemorySink, MemorySink, SQLiteSink

KEY = "key"
EVENTS = [
    {"message": "own namespace", "namespace": "https://api.domain.com/resource/{id}"},  # the spec's example
    {"message": "own both", "service": "worker", "namespace": "jobs"},
    {"message": "neither"},
    {"message": "not strings", "service": 42, "namespace": ""},
]
EXPECTED = [
    ("my-service", "https://api.domain.com/resource/{id}"),
    ("worker", "jobs"),
    ("my-service", "hdr-ns"),
    ("my-service", "hdr-ns"),
]
HEADERS = {"x-api-key": KEY, "Content-Type": "application/json", "x-service": "my-service", "x-namespace": "hdr-ns"}


def send(adapter, sink, headers=HEADERS):
    client = make_client(adapter, [BetterStackAPI(["tok"], rate_limit=None), BaselimeAPI([KEY])], sink)
    assert client.request("POST", PREFIX + "/v1/web", orjson.dumps(EVENTS), headers).status == 202


def test_the_batch_gives_each_events_labels(adapter):
    sink = MemorySink()
    send(adapter, sink)
    (batch,) = sink.batches
    assert (batch.service, batch.namespace) == ("my-service", "hdr-ns")  # the headers'
    assert [batch.labels(event.data) for event in batch.events] == EXPECTED
    assert [event.data for event in batch.events] == EVENTS  # the events stay as sent


def test_without_headers_only_the_events_own_are_set(adapter):
    sink = MemorySink()
    send(adapter, sink, {"x-api-key": KEY, "Content-Type": "application/json"})
    (batch,) = sink.batches
    assert [batch.labels(event.data) for event in batch.events] == [
        (None, "https://api.domain.com/resource/{id}"),
        ("worker", "jobs"),
        (None, None),
        (None, None),
    ]


def test_betterstack_events_fields_are_only_data(adapter):
    sink = SQLiteSink(":memory:")
    client = make_client(adapter, BetterStackAPI(["tok"], rate_limit=None), sink)
    body = orjson.dumps({"message": "m", "service": "svc", "namespace": "ns"})
    assert (
        client.request(
            "POST", PREFIX + "/", body, {"Authorization": "Bearer tok", "Content-Type": "application/json"}
        ).status
        == 202
    )
    assert sink._db.execute("SELECT service, namespace FROM events").fetchall() == [(None, None)]


def test_sqlite_and_json_lines_store_each_events_own(adapter, tmp_path):
    sqlite = SQLiteSink(tmp_path / "events.db")
    send(adapter, sqlite)
    assert sqlite._db.execute("SELECT service, namespace FROM events ORDER BY id").fetchall() == EXPECTED
    sqlite.close()
    jsonl = JSONLinesSink(tmp_path / "events.jsonl")
    send(adapter, jsonl)
    jsonl.close()
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(line["service"], line["namespace"]) for line in lines] == EXPECTED


def test_json_memory_sink_reads_back_the_rule(adapter):
    sink = JSONMemorySink()
    send(adapter, sink)
    (batch,) = sink.batches
    assert [batch.labels(event.data) for event in batch.events] == EXPECTED
