"""The built-in sinks on real files."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import pytest

from ingest_mw import Batch, Event, JSONLinesSink, MemorySink, SQLiteSink, sink_from_url

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def batch(n: int = 2, **meta) -> Batch:
    events = [Event(T0 + timedelta(seconds=i), {"i": i, "dt": "kept as sent"}) for i in range(n)]
    return Batch(api=meta.pop("api", "baselime"), source="src", received_at=T0, events=events, client="1.2.3.4", **meta)


def test_sqlite_rows_and_columns(tmp_path):
    path = tmp_path / "events.db"
    sink = SQLiteSink(path)
    sink(batch(2, dataset="ds", service="svc", namespace="ns"))
    sink.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = db.execute(
        "SELECT id, received_at, dt, api, source, dataset, service, namespace, data FROM events ORDER BY id"
    ).fetchall()
    assert rows == [
        (1, "2024-05-01T12:00:00.000000+00:00", "2024-05-01T12:00:00.000000+00:00", "baselime", "src", "ds", "svc", "ns", '{"i":0,"dt":"kept as sent"}'),
        (2, "2024-05-01T12:00:00.000000+00:00", "2024-05-01T12:00:01.000000+00:00", "baselime", "src", "ds", "svc", "ns", '{"i":1,"dt":"kept as sent"}'),
    ]


def test_sqlite_one_transaction_per_batch(tmp_path):
    sink = SQLiteSink(tmp_path / "e.db")
    circular: dict = {}
    circular["self"] = circular  # cannot be written as JSON
    bad = Batch("betterstack", "s", T0, [Event(T0, {"ok": 1}), Event(T0, circular)])
    with pytest.raises(Exception):
        sink(bad)
    sink(batch(1))
    count = sqlite3.connect(tmp_path / "e.db").execute("SELECT count(*) FROM events").fetchone()[0]
    assert count == 1  # the failed batch left nothing behind


def test_sqlite_safe_under_concurrent_writers(tmp_path):
    sink = SQLiteSink(tmp_path / "c.db")
    errors = []

    def writer():
        try:
            for _ in range(25):
                sink(batch(4))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    count = sqlite3.connect(tmp_path / "c.db").execute("SELECT count(*) FROM events").fetchone()[0]
    assert count == 8 * 25 * 4


def test_msgpack_only_values_are_stored_as_json(tmp_path):
    sink = SQLiteSink(tmp_path / "m.db")
    sink(Batch("betterstack", "s", T0, [Event(T0, {"bin": b"\xffab", 1: "int key", "dt": T0})]))
    data = sqlite3.connect(tmp_path / "m.db").execute("SELECT data FROM events").fetchone()[0]
    assert json.loads(data) == {"bin": "\\xffab", "1": "int key", "dt": "2024-05-01T12:00:00Z"}


def test_jsonl_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    sink = JSONLinesSink(path)
    sink(batch(2, api="betterstack"))
    sink(batch(1, api="betterstack"))
    sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 3
    assert lines[1] == {
        "received_at": "2024-05-01T12:00:00.000000+00:00",
        "dt": "2024-05-01T12:00:01.000000+00:00",
        "api": "betterstack",
        "source": "src",
        "dataset": None,
        "service": None,
        "namespace": None,
        "data": {"i": 1, "dt": "kept as sent"},
    }


def test_memory_sink():
    sink = MemorySink()
    sink(batch(2))
    assert [e.data["i"] for e in sink.events] == [0, 1]
    sink.clear()
    assert sink.events == []


def test_a_bounded_memory_sink_drops_the_oldest_batches():
    sink = MemorySink(max_events=5)
    for n in (2, 2, 2, 3):
        sink(batch(n))
    assert [len(b.events) for b in sink.batches] == [2, 3]  # 5 kept, the newest
    sink(batch(8))
    assert [len(b.events) for b in sink.batches] == [8]  # a larger batch is still kept whole
    with pytest.raises(ValueError):
        MemorySink(max_events=0)


def test_sink_from_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = sink_from_url("sqlite:///rel.db")
    assert isinstance(relative, SQLiteSink) and relative.path == "rel.db"
    absolute = sink_from_url(f"sqlite:///{tmp_path}/abs.db")
    assert absolute.path == f"{tmp_path}/abs.db"
    assert isinstance(sink_from_url("jsonl:///e.jsonl"), JSONLinesSink)
    assert sink_from_url("memory://").max_events == 10_000  # a server's memory stays bounded
    assert sink_from_url("memory://?max_events=7").max_events == 7
    for bad in ("postgres://x", "sqlite://", "sqlite:///", "nonsense", "memory://?max_events=0", "memory://?size=3"):
        with pytest.raises(ValueError):
            sink_from_url(bad)


def test_event_json_falls_back_for_what_orjson_refuses(tmp_path):
    from ingest_mw.batch import event_json

    deep: dict = {"leaf": 1}
    for _ in range(1000):
        deep = {"a": deep}
    text = event_json(deep)
    assert text.startswith(b'{"a":{"a":') and text.endswith(b'"leaf":1' + b"}" * 1001)
    assert json.loads(event_json({b"bin": b"\xff", 2: T0})) == {"bin": "\\xff", "2": "2024-05-01T12:00:00+00:00"}
