"""The built-in sinks on real files."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from clients import PREFIX, make_client

from ingest_mw import Batch, BetterStackAPI, Event, JSONLinesSink, JSONMemorySink, MemorySink, SQLiteSink, sink_from_url
from ingest_mw.read import Query, reader_for
from ingest_mw.sinks import BatchRefused, SinkUnavailable
from ingest_mw.sinks.base import ON_LOOP_EVENTS
from ingest_mw.sinks.wakeable import WakeableThread

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


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
        (
            1,
            "2024-05-01T12:00:00.000000+00:00",
            "2024-05-01T12:00:00.000000+00:00",
            "baselime",
            "src",
            "ds",
            "svc",
            "ns",
            '{"i":0,"dt":"kept as sent"}',
        ),
        (
            2,
            "2024-05-01T12:00:00.000000+00:00",
            "2024-05-01T12:00:01.000000+00:00",
            "baselime",
            "src",
            "ds",
            "svc",
            "ns",
            '{"i":1,"dt":"kept as sent"}',
        ),
    ]


def test_sqlite_one_transaction_per_batch(tmp_path):
    sink = SQLiteSink(tmp_path / "e.db")
    circular: dict = {}
    circular["self"] = circular  # cannot be written as JSON
    bad = Batch("betterstack", "s", T0, [Event(T0, {"ok": 1}), Event(T0, circular)])
    with pytest.raises(RecursionError):
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


async def stored_or_why(sink, given: Batch) -> str:
    """``"stored"``, or why the sink's ``acall`` did not store ``given``."""
    try:
        await sink.acall(given)
    except SinkUnavailable as error:
        return str(error)
    return "stored"


def test_sqlite_batches_from_an_event_loop_are_each_acknowledged_once_committed(tmp_path):
    path = tmp_path / "a.db"
    writers_before = set(writer_threads())
    sink = SQLiteSink(path)
    reader = sqlite3.connect(path)

    async def store(number: int) -> int:
        await sink.acall(batch(3, dataset=f"d{number}"))
        # Acknowledged: another connection sees the whole batch already.
        return reader.execute("SELECT count(*) FROM events WHERE dataset = ?", (f"d{number}",)).fetchone()[0]

    async def main() -> list[int]:
        return await asyncio.wait_for(asyncio.gather(*(store(number) for number in range(40))), 30)

    assert asyncio.run(main()) == [3] * 40
    assert reader.execute("SELECT count(*) FROM events").fetchone()[0] == 120
    assert set(writer_threads()) - writers_before  # the sink's writer did the work
    sink.close()
    assert set(writer_threads()) == writers_before  # and ends with the sink


def test_sqlite_a_locked_file_fails_a_group_once_not_each_batch_after_the_other(tmp_path):
    path = tmp_path / "l.db"
    sink = SQLiteSink(path, busy_timeout=0.3)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")

    async def store(number: int) -> str:
        return await stored_or_why(sink, batch(1, dataset=f"d{number}"))

    async def main() -> list[str]:
        sink._lock.acquire()  # all six queued before the writer starts: one group
        tasks = [asyncio.create_task(store(number)) for number in range(6)]
        await asyncio.sleep(0.05)
        sink._lock.release()
        return await asyncio.wait_for(asyncio.gather(*tasks), 30)

    started = time.monotonic()
    outcomes = asyncio.run(main())
    elapsed = time.monotonic() - started
    assert all("database is locked" in outcome for outcome in outcomes), outcomes
    assert elapsed < 6 * 0.3  # one busy timeout for the group, not one for each batch tried alone
    locker.execute("ROLLBACK")
    asyncio.run(store(99))  # and the file is written again once it is free
    assert sqlite3.connect(path).execute("SELECT dataset FROM events").fetchall() == [("d99",)]
    sink.close()


def writer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("ingest_mw-writer SQLite sink")]


def test_sqlite_a_batch_the_file_refuses_fails_alone_among_those_committed_with_it(tmp_path, caplog):
    class Strict(SQLiteSink):
        """Values longer than 10,000 characters are refused by SQLite itself."""

        def _connect(self):
            db = super()._connect()
            db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10_000)
            return db

    path = tmp_path / "s.db"
    sink = Strict(path)
    too_big = Batch("betterstack", "s", T0, [Event(T0, {"message": "x" * 20_000})])

    async def store(given: Batch) -> str:
        return await stored_or_why(sink, given)

    async def main() -> list[str]:
        # The writer is held while all three are queued, so they meet in one commit.
        sink._lock.acquire()
        tasks = [asyncio.create_task(store(given)) for given in [batch(1, dataset="a"), too_big, batch(1, dataset="b")]]
        await asyncio.sleep(0.05)
        sink._lock.release()
        return await asyncio.wait_for(asyncio.gather(*tasks), 30)

    outcome = asyncio.run(main())
    assert outcome[0] == outcome[2] == "stored"
    assert "too big" in outcome[1] and str(path) in outcome[1]
    rows = sqlite3.connect(path).execute("SELECT dataset FROM events ORDER BY id").fetchall()
    assert rows == [("a",), ("b",)]
    assert "batches fail until it works again" not in caplog.text  # its own values: no outage of the file
    with pytest.raises(BatchRefused, match="too big"):  # its own values: answered 500, not a 503 to retry
        sink(too_big)
    sink(batch(2))
    sink.close()


def test_json_lines_batches_from_an_event_loop_are_each_acknowledged_once_written(tmp_path):
    path = tmp_path / "a.jsonl"
    sink = JSONLinesSink(path)

    async def store(number: int) -> int:
        await sink.acall(batch(3, dataset=f"d{number}"))
        # Acknowledged: the file holds the whole batch already. (The writer
        # may be writing later batches meanwhile: the text after the last
        # line break is one on its way, as a reader sees it too.)
        whole_lines = path.read_text().split("\n")[:-1]
        return sum(1 for line in whole_lines if json.loads(line)["dataset"] == f"d{number}")

    async def main() -> list[int]:
        return await asyncio.wait_for(asyncio.gather(*(store(number) for number in range(40))), 30)

    assert asyncio.run(main()) == [3] * 40
    assert len(path.read_text().splitlines()) == 120
    sink.close()


def test_json_lines_a_path_that_cannot_be_written_fails_every_batch_queued_for_it(tmp_path):
    path = tmp_path / "b.jsonl"
    sink = JSONLinesSink(path)
    path.rename(tmp_path / "rotated.jsonl")
    path.mkdir()  # what the path now names cannot be appended to

    async def store(number: int) -> str:
        return await stored_or_why(sink, batch(1, dataset=f"d{number}"))

    async def main() -> list[str]:
        return await asyncio.wait_for(asyncio.gather(*(store(number) for number in range(5))), 30)

    assert all(str(path) in outcome and "directory" in outcome for outcome in asyncio.run(main()))
    path.rmdir()
    assert asyncio.run(store(9)) == "stored"
    assert [json.loads(line)["dataset"] for line in path.read_text().splitlines()] == ["d9"]
    sink.close()


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


def test_the_json_memory_sink_keeps_the_newest_events_in_whole_batches():
    sink = JSONMemorySink(max_events=5)
    for n in (2, 2, 2, 3):
        sink(batch(n))
    assert [len(b.events) for b in sink.batches] == [2, 3]  # 5 kept, the newest
    sink(batch(8))
    assert [len(b.events) for b in sink.batches] == [8]  # a larger batch is still kept whole
    assert [e.data["i"] for e in sink.events] == list(range(8))
    sink.clear()
    assert sink.events == [] and sink.batches == []
    with pytest.raises(ValueError):
        JSONMemorySink(max_events=0)


def test_the_json_memory_sink_reads_back_what_it_was_given_as_json():
    sink = JSONMemorySink()
    given = batch(3, dataset="ds", service="svc", namespace="ns")
    sink(given)
    sink(Batch("betterstack", "s", T0, [Event(T0, {"bin": b"\xffab", 1: "int key", "dt": T0})]))
    kept, binary = sink.batches
    # Everything but the events' container is the batch itself.
    assert (kept.api, kept.source, kept.received_at, kept.client, kept.dataset, kept.service, kept.namespace) == (
        "baselime",
        "src",
        T0,
        "1.2.3.4",
        "ds",
        "svc",
        "ns",
    )
    assert json.loads(kept.events.json) == [e.data for e in given.events]  # one JSON array per batch
    assert list(kept.events) == list(given.events) and kept.events == given.events
    assert kept.events[1] == given.events[1] and kept.events.times == [e.time for e in given.events]
    # MessagePack-only values read back as the file sinks store them.
    assert binary.events.data == [{"bin": "\\xffab", "1": "int key", "dt": "2024-05-01T12:00:00Z"}]


def test_the_json_memory_sink_decides_the_times_by_the_apis_rule_when_read(adapter):
    from clients import PREFIX, make_client

    sink = JSONMemorySink()
    client = make_client(adapter, BetterStackAPI(["tok"]), sink)
    headers = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
    sent = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=500000)
    dt = sent.astimezone(timezone(timedelta(hours=2))).isoformat()
    events = [{"dt": dt, "n": 1}, {"dt": "not a time", "n": 2}, {"dt": "2024-05-01T12:00:00Z", "n": 3}, {"n": 4}]
    assert client.request("POST", PREFIX + "/", json.dumps(events).encode(), headers).status == 202
    (kept,) = sink.batches
    received = kept.received_at
    # The sent time in UTC; the reception time for an unparsable, a too old and a missing dt.
    assert kept.events.times == [sent, received, received, received]
    assert kept.events.times[0].tzinfo == UTC
    assert [e.data for e in kept.events] == events


def test_the_json_memory_sink_keeps_the_times_decided_from_the_events_as_sent(adapter):
    import msgpack
    from clients import PREFIX, make_client

    sink = JSONMemorySink()
    client = make_client(adapter, BetterStackAPI(["tok"]), sink)
    recent = (datetime.now(UTC) - timedelta(minutes=1)).isoformat().encode()
    # Binary, not a string: no time as sent, although its JSON text would parse as one.
    body = msgpack.packb([{"dt": recent, "n": 1}, {"dt": recent.decode(), "n": 2}])
    headers = {"Authorization": "Bearer tok", "Content-Type": "application/msgpack"}
    assert client.request("POST", PREFIX + "/", body, headers).status == 202
    (kept,) = sink.batches
    assert kept.events.times == [kept.received_at, datetime.fromisoformat(recent.decode())]
    assert [e.data["dt"] for e in kept.events] == [recent.decode(), recent.decode()]


def test_the_json_memory_sink_decides_times_with_the_events_own_reception_time():
    from ingest_mw import Events, EventTimes

    later = T0 + timedelta(hours=1)
    sink = JSONMemorySink()
    # A host's batch whose events decide with another reception time than the batch's own.
    sink(Batch("betterstack", "s", T0, Events([{"n": 1}], EventTimes(max_past=None), later)))
    assert [event.time for event in sink.events] == [later]
    assert sink.batches[0].received_at == T0


def test_an_equal_reception_time_leaves_the_times_undecided_until_read():
    from ingest_mw import Events, EventTimes

    calls = []

    class Counting(EventTimes):
        def event_times(self, events, received_at):
            calls.append(received_at)
            return super().event_times(events, received_at)

    same = datetime.fromtimestamp(T0.timestamp(), UTC)  # equal to T0, another object
    sink = JSONMemorySink()
    sink(Batch("betterstack", "s", T0, Events([{"n": 1}], Counting(), same)))
    assert calls == []  # kept with the rule, not with times decided now
    assert [event.time for event in sink.events] == [T0] and calls == [T0]


def test_the_json_memory_sink_keeps_times_a_hook_read_before_changing_the_objects():
    from ingest_mw import Events, EventTimes

    sent = T0 - timedelta(minutes=1)
    events = Events([{"dt": sent.isoformat(), "n": 1}], EventTimes(max_past=None), T0)
    assert events.times == [sent]  # read first, as the README asks of a hook that redacts
    events.data[0]["dt"] = "redacted"
    sink = JSONMemorySink()
    sink(Batch("betterstack", "s", T0, events))
    (kept,) = sink.batches
    assert kept.events.times == [sent] and kept.events.data == [{"dt": "redacted", "n": 1}]
    kept.events.times.append(T0)  # a reader's change to the list is its own
    assert sink.batches[0].events.times == [sent]


def test_the_json_memory_sink_hands_out_new_batches_on_each_read():
    sink = JSONMemorySink()
    sink(batch(2))
    first = sink.batches[0]
    first.source = "changed"
    assert sink.batches[0].source == "src" and sink.batches[0] is not first


def test_a_json_batch_is_kept_without_deciding_its_times_until_read(adapter):
    from clients import PREFIX, make_client

    api = BetterStackAPI(["tok"])
    decide, calls = api.times.event_times, []

    def counted(events, received_at):
        calls.append(len(events))
        return decide(events, received_at)

    api.times.event_times = counted  # type: ignore[method-assign]
    sink = JSONMemorySink()
    client = make_client(adapter, api, sink)
    headers = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
    assert client.request("POST", PREFIX + "/", b'[{"n": 1}, {"n": 2}]', headers).status == 202
    assert calls == []  # stored without a time decided
    assert [e.time for e in sink.events] == [sink.batches[0].received_at] * 2
    assert calls == [2]


def test_json_events_read_back_whole_sequences_at_once():
    sink = JSONMemorySink()
    given = batch(3)
    sink(given)
    (kept,) = sink.batches
    events = list(given.events)
    assert list(reversed(kept.events)) == events[::-1]
    assert events[2] in kept.events and Event(T0, {}) not in kept.events
    assert kept.events.index(events[1]) == 1 and kept.events.count(events[0]) == 1
    assert kept.events[-1] == events[-1] and kept.events[::-1] == events[::-1]
    sink(kept)  # a kept batch stored again keeps the same events
    assert sink.batches[1].events == events


def test_a_host_built_batch_may_hold_plain_pairs():
    sink = JSONMemorySink()
    sink(Batch("betterstack", "s", T0, [(T0, {"a": 1})]))  # type: ignore[list-item]
    assert sink.events == [Event(T0, {"a": 1})]


def test_the_json_memory_sink_stores_what_orjson_refuses_and_refuses_what_json_cannot_hold():
    sink = JSONMemorySink()
    deep: dict = {"leaf": 1}
    for _ in range(1023):
        deep = {"a": deep}
    sink(Batch("betterstack", "s", T0, [Event(T0, deep)]))
    assert sink.events[0].data == deep  # 1024 levels, inside the array: read back by the stdlib
    circular: dict = {}
    circular["self"] = circular
    with pytest.raises(RecursionError):  # the stdlib fallback's refusal of a cycle
        sink(Batch("betterstack", "s", T0, [Event(T0, {"ok": 1}), Event(T0, circular)]))
    assert len(sink.batches) == 1  # the batch that could not be written is not kept


def test_the_json_memory_sink_encodes_a_large_batch_off_the_event_loop():
    import asyncio

    from ingest_mw.sinks.memory import ON_LOOP_EVENTS

    threads = []

    class Recording(JSONMemorySink):
        def __call__(self, batch):
            threads.append(threading.get_ident())
            super().__call__(batch)

    sink = Recording()

    async def main():
        await sink.acall(batch(ON_LOOP_EVENTS))
        await sink.acall(batch(ON_LOOP_EVENTS + 1))
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert threads[0] == loop_thread and threads[1] != loop_thread
    assert [len(b.events) for b in sink.batches] == [ON_LOOP_EVENTS, ON_LOOP_EVENTS + 1]


def test_sink_from_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = sink_from_url("sqlite:///rel.db")
    assert isinstance(relative, SQLiteSink) and relative.path == "rel.db"
    absolute = sink_from_url(f"sqlite:///{tmp_path}/abs.db")
    assert absolute.path == f"{tmp_path}/abs.db"
    assert isinstance(sink_from_url("jsonl:///e.jsonl"), JSONLinesSink)
    assert isinstance(sink_from_url("memory://"), JSONMemorySink)
    assert sink_from_url("memory://").max_events == 10_000  # a server's memory stays bounded
    assert sink_from_url("memory://?max_events=7").max_events == 7
    for bad in (
        "sqlite://",
        "sqlite:///",
        "nonsense",
        "memory://?max_events=0",
        "memory://?size=3",
        "mysql://u:pw@h/db",
    ):
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


def test_what_the_fallback_writes_is_json_every_reader_reads(tmp_path):
    # An integer past 64 bits (OTLP JSON) or a binary key (MessagePack) sends an
    # event to the fallback: a NaN or an infinity beside it is null there too, as
    # orjson writes it, never NaN, which SQLite's JSON functions (and tail) refuse.
    import orjson

    odd = {"id": "x", "big": 10**20, "d": float("nan"), "f": [float("inf"), -float("inf")]}
    path = tmp_path / "e.db"
    sink = SQLiteSink(path)
    sink(Batch("otlp", "s", T0, [Event(T0, odd), Event(T0, {b"k": float("nan")})]))
    sink.close()
    db = sqlite3.connect(path)
    rows = db.execute("SELECT json_valid(data), json_extract(data, '$.id'), data FROM events ORDER BY id").fetchall()
    assert [row[:2] for row in rows] == [(1, "x"), (1, None)]
    assert orjson.loads(rows[0][2]) == {"id": "x", "big": 10**20, "d": None, "f": [None, None]}
    assert orjson.loads(rows[1][2]) == {"k": None}
    from ingest_mw.batch import event_json

    assert event_json({b"bin": 1, "t": (float("nan"), 1)}) == b'{"bin":1,"t":[null,1]}'  # a host codec's tuple


def test_jsonl_lines_hold_the_columns_in_order_and_odd_values(tmp_path):
    from ingest_mw.sinks.record import COLUMNS

    path = tmp_path / "odd.jsonl"
    sink = JSONLinesSink(path)
    odd = {"q": 'quote " and \\ and \n', "nul": "\u0000", "bin": b"\xff"}
    sink(Batch("baselime", 'so"urce', T0, [Event(T0, odd)], dataset="d\\s", namespace="n\n"))
    sink.close()
    (line,) = path.read_bytes().splitlines()
    record = json.loads(line)
    assert tuple(record) == COLUMNS
    assert record["source"] == 'so"urce' and record["dataset"] == "d\\s" and record["namespace"] == "n\n"
    assert record["service"] is None and record["data"] == {**odd, "bin": "\\xff"}


def test_times_are_written_at_fixed_width_whatever_their_fraction_or_offset():
    from ingest_mw.sinks.record import iso_utc, iso_utc_each

    times = [
        T0,  # no fraction: orjson would leave it out
        T0.replace(microsecond=5),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2024, 1, 1, 0, 0, 0, 1),  # naive: a host's batch
        datetime(2024, 1, 1, tzinfo=timezone(timedelta(seconds=30))),
    ]
    assert iso_utc_each(times) == [iso_utc(time) for time in times]
    assert iso_utc_each(times[:2]) == ["2024-05-01T12:00:00.000000+00:00", "2024-05-01T12:00:00.000005+00:00"]
    assert iso_utc_each([]) == []


LABELLED = [{"service": "a", "n": 1}, {"service": "a", "n": 2}, {"n": 3}, {"service": "b", "namespace": "x", "n": 4}]
LABELS = [("a", "hdr-ns"), ("a", "hdr-ns"), ("hdr-svc", "hdr-ns"), ("b", "x")]


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
def test_events_that_name_their_own_service_keep_it(adapter, tmp_path, kind):
    from clients import PREFIX, make_client

    from ingest_mw import BaselimeAPI

    path = tmp_path / f"labels.{kind}"
    sink = SQLiteSink(path) if kind == "sqlite" else JSONLinesSink(path)
    client = make_client(adapter, BaselimeAPI({"team": "key"}), sink)
    headers = {"x-api-key": "key", "Content-Type": "application/json", "x-service": "hdr-svc", "x-namespace": "hdr-ns"}
    assert client.request("POST", PREFIX + "/v1/ds", json.dumps(LABELLED).encode(), headers).status == 202
    sink.close()
    expected = [(*label, event) for label, event in zip(LABELS, LABELLED)]
    if kind == "sqlite":
        got = sqlite3.connect(path).execute("SELECT service, namespace, data FROM events ORDER BY id").fetchall()
        assert [(s, n, json.loads(d)) for s, n, d in got] == expected
    else:
        got = [json.loads(line) for line in path.read_text().splitlines()]
        assert [(r["service"], r["namespace"], r["data"]) for r in got] == expected


def test_a_sinks_background_thread_goes_on_after_a_failed_step_and_starts_again_when_gone(caplog, monkeypatch):
    steps: list[str] = []
    stepped = threading.Semaphore(0)

    def step() -> None:
        steps.append(threading.current_thread().name)
        stepped.release()
        if len(steps) == 1:
            raise MemoryError("the first step fails")

    thread = WakeableThread("ingest_mw-test-thread", step)
    thread.wake()
    assert stepped.acquire(timeout=5)
    thread.wake()  # the failure was logged, and the thread is still there
    assert stepped.acquire(timeout=5)
    assert "ingest_mw-test-thread failed" in caplog.text
    thread.stop(timeout=5)
    thread.wake()  # ended: started again
    assert stepped.acquire(timeout=5)
    assert steps == ["ingest_mw-test-thread"] * 3
    thread.stop(timeout=5)

    def no_thread(self) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        thread.wake()
    monkeypatch.undo()
    thread.wake()  # tried again, and started
    assert stepped.acquire(timeout=5)
    thread.stop(timeout=5)


def test_a_batch_from_an_event_loop_fails_at_once_when_no_writer_thread_can_start(tmp_path, monkeypatch):
    sink = SQLiteSink(tmp_path / "t.db")

    def no_thread(self) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    with pytest.raises(SinkUnavailable, match="cannot start its writer thread"):
        asyncio.run(asyncio.wait_for(sink.acall(batch(1)), 10))
    monkeypatch.undo()
    asyncio.run(asyncio.wait_for(sink.acall(batch(1)), 10))  # nothing left behind: one row, once
    assert sqlite3.connect(tmp_path / "t.db").execute("SELECT count(*) FROM events").fetchone()[0] == 1
    sink.close()


@pytest.mark.parametrize("kind", ["sqlite", "jsonl", "memory"])
def test_a_batch_too_large_for_the_loop_is_made_in_a_thread_of_a_small_pool_of_its_own(tmp_path, kind):
    base = {"sqlite": SQLiteSink, "jsonl": JSONLinesSink, "memory": JSONMemorySink}[kind]
    # What makes the batch's rows, lines or JSON: the group-commit sinks' payload, the memory sink's whole call.
    making = "__call__" if kind == "memory" else "_payload"
    seen: list[str] = []

    def watched(self, batch):
        seen.append(threading.current_thread().name)
        return getattr(super(type(self), self), making)(batch)

    Watched = type("Watched", (base,), {making: watched, "acall": base.acall})  # its own async face kept
    sink = Watched(tmp_path / "big") if kind != "memory" else Watched(max_events=100_000)
    asyncio.run(sink.acall(batch(ON_LOOP_EVENTS + 1)))
    assert len(seen) == 1 and seen[0].startswith("ingest_mw-large-batch")  # never the loop's default executor
    assert len(sink.events if kind == "memory" else reader_for(sink).search(Query(limit=10_000))) == ON_LOOP_EVENTS + 1
    sink.close()


def test_a_request_given_up_while_its_batch_waits_takes_the_batch_out_of_the_queue(tmp_path):
    path = tmp_path / "c.db"
    sink = SQLiteSink(path)

    async def main() -> None:
        sink._lock.acquire()  # the writer is busy: the batches wait in the queue
        try:
            kept = asyncio.create_task(sink.acall(batch(1, dataset="kept")))
            given_up = [asyncio.create_task(sink.acall(batch(1, dataset="given up"))) for _ in range(20)]
            await asyncio.sleep(0.05)
            for task in given_up:
                task.cancel()
            await asyncio.gather(*given_up, return_exceptions=True)
        finally:
            sink._lock.release()
        await asyncio.wait_for(kept, 10)

    asyncio.run(main())
    assert sqlite3.connect(path).execute("SELECT dataset FROM events").fetchall() == [("kept",)]
    sink.close()


def test_large_batches_are_made_two_at_a_time_whatever_comes_at_once():
    from ingest_mw.sinks.base import LARGE_BATCH_THREADS

    inside, most = [0], [0]
    lock = threading.Lock()

    class Counted(JSONMemorySink):
        def __call__(self, batch):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)  # long enough for the others to come in, were they let in
            try:
                return super().__call__(batch)
            finally:
                with lock:
                    inside[0] -= 1

    Counted.acall = JSONMemorySink.acall
    sink = Counted(max_events=10**6)

    async def main() -> None:
        await asyncio.gather(*(sink.acall(batch(ON_LOOP_EVENTS + 1)) for _ in range(8)))

    asyncio.run(main())
    assert most[0] == LARGE_BATCH_THREADS == 2
    assert len(sink.events) == 8 * (ON_LOOP_EVENTS + 1)


@pytest.mark.parametrize("adapter", ["wsgi", "asgi"])
def test_an_unexpected_failure_of_a_group_write_is_a_500_with_its_traceback(tmp_path, adapter, caplog):
    # Not the storage's outage (which is a 503 to retry): a bug, answered 500,
    # its traceback logged by the writer.
    class Broken(JSONLinesSink):
        def _write_group(self, group):
            raise TypeError("a bug in the sink")

    sink = Broken(tmp_path / "b.jsonl")
    client = make_client(adapter, BetterStackAPI({"web": "tok"}), sink)
    headers = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
    with caplog.at_level(logging.ERROR):
        assert client.request("POST", PREFIX + "/", b'{"n": 1}', headers).status == 500
    written = [r for r in caplog.records if "writing 1 batches failed" in r.getMessage()]
    assert written and written[0].exc_info is not None and "a bug in the sink" in str(written[0].exc_info[1])
    sink.close()
