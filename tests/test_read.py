"""The readers over real sinks: a real SQLite file, a real JSON Lines file, a real JSONMemorySink."""

from __future__ import annotations

import importlib.util
import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest

import ingest_mw.read.jsonl as jsonl_reader
from ingest_mw.batch import Batch, Events
from ingest_mw.read import Query, parse_since, reader_for, reader_from_url
from ingest_mw.read.rate import RateCache, bucket_seconds, rate_series
from ingest_mw.read.sqlite import SQLiteReader
from ingest_mw.sinks import JSONLinesSink, JSONMemorySink, SQLiteSink
from ingest_mw.timestamps import EventTimes

try:  # a real PostgreSQL server, where the PostgreSQL sink and its fixture are there
    from postgres_fixture import pg_table, postgres_server  # noqa: F401
except ImportError:
    pg_table = postgres_server = None

RULE = EventTimes()
NOW = datetime.now(UTC).replace(microsecond=0)


def batch(events: list[dict], *, source: str = "web", api: str = "betterstack", at: datetime = NOW, **fields) -> Batch:
    return Batch(api, source, at, Events(events, RULE, at), None, **fields)


def fill(sink, count: int) -> list[str]:
    """``count`` batches of 1-3 events of varied sizes; returns the messages in order."""
    messages = []
    for index in range(count):
        events = [
            {"message": f"event {index}.{part} " + "x" * (index * 37 % 300), "level": ["info", "error"][index % 2]}
            for part in range(index % 3 + 1)
        ]
        sink(batch(events))
        messages += [event["message"] for event in events]
    return messages


def postgres_sink(request):
    if postgres_server is None or importlib.util.find_spec("ingest_mw.sinks.postgres") is None:
        pytest.skip("needs the PostgreSQL sink (ingest_mw.sinks.postgres) and tests/postgres_fixture.py")
    from ingest_mw.sinks.postgres import PostgresSink

    return PostgresSink(request.getfixturevalue("postgres_server").url, table=request.getfixturevalue("pg_table"))


@pytest.fixture(params=["sqlite", "jsonl", "memory", "postgres"])
def sink_and_reader(request, tmp_path):
    sink = {
        "sqlite": lambda: SQLiteSink(tmp_path / "e.db"),
        "jsonl": lambda: JSONLinesSink(tmp_path / "e.jsonl"),
        "memory": lambda: JSONMemorySink(max_events=100_000),
        "postgres": lambda: postgres_sink(request),
    }[request.param]()
    if request.param == "postgres":
        sink(batch([{"message": "made the table"}]))
        connection = __import__("psycopg").connect(sink.conninfo, autocommit=True)
        connection.execute(f"DELETE FROM {sink.table}")
        connection.close()
    yield sink, (lambda: reader_for(sink))
    sink.close()


def test_search_pages_back_and_after_follows(sink_and_reader, monkeypatch):
    monkeypatch.setattr(jsonl_reader, "_CHUNK", 256)  # many blocks, lines across their edges
    sink, make_reader = sink_and_reader
    messages = fill(sink, 60)
    reader = make_reader()
    pages, before = [], None
    while True:
        page = reader.search(Query(limit=7, before=before))
        pages += [event.data["message"] for event in page]
        if len(page) < 7:
            break
        before = page[-1].id
    assert pages == messages[::-1]
    middle = reader.search(Query(limit=0))[40]
    assert [e.data["message"] for e in reader.after(middle.id, Query(limit=0))] == messages[len(messages) - 40 :]
    newest_since = reader.search(Query(limit=5, after=middle.id))
    assert [e.data["message"] for e in newest_since] == messages[::-1][:5]
    assert reader.get(middle.id) == middle
    assert [e.data["message"] for e in reader.search(Query(limit=0, levels=frozenset({"ERROR"})))] == [
        m for m in messages[::-1] if int(m.split()[1].split(".")[0]) % 2
    ]
    cursor = reader.cursor()
    assert reader.after(cursor, Query()) == []
    fingerprint = reader.fingerprint()
    sink(batch([{"message": "new one"}]))
    assert reader.fingerprint() != fingerprint
    assert [e.data["message"] for e in reader.after(cursor, Query())] == ["new one"]
    # A page up to a cursor taken before more arrived: still a full page, none of the new.
    up_to = reader.search(Query(limit=5).up_to(cursor))
    assert [e.data["message"] for e in up_to] == messages[::-1][:5]
    assert Query(before=3).up_to(cursor) == Query(before=3)  # a tighter bound stays


def test_filters_on_every_reader(sink_and_reader):
    sink, make_reader = sink_and_reader
    old = NOW - timedelta(hours=2)
    sink(batch([{"message": "Old Disk Warning", "level": "WARN", "dt": old.isoformat()}], at=old))
    sink(
        batch(
            [{"message": "charged", "severity": "info", "amount": 3}],
            api="baselime",
            source="team",
            dataset="pay",
            service="api",
        )
    )
    sink(batch([{"message": 'quote " and \\ back', "level": None, "severity": "debug"}]))
    sink(batch([{"body": {"said": "otlp"}, "severity_text": "FATAL", "severity_number": 21}], api="otlp"))
    reader = make_reader()

    def found(**filters) -> list[str]:
        return [e.data.get("message", "otlp") for e in reader.search(Query(limit=0, **filters))]

    assert found(api="baselime") == found(source="team") == found(dataset="pay") == found(service="api") == ["charged"]
    assert found(levels=frozenset({"warn"})) == ["Old Disk Warning"]
    assert found(levels=frozenset({"fatal"})) == found(api="otlp") == ["otlp"]  # an OTLP record's severity_text
    assert found(levels=frozenset({"debug", "info"})) == [
        'quote " and \\ back',
        "charged",
    ]  # severity, and a null level
    # A comma-separated value is several levels, as --level and the page's level= send them.
    assert found(levels=frozenset({"Debug, INFO"})) == found(levels=frozenset({"debug", "info"}))
    assert found(text="disk warn") == ["Old Disk Warning"]
    assert found(text="AMOUNT") == ["charged"]
    assert found(text='quote \\"') == ['quote " and \\ back']  # the JSON text, where a quote is escaped
    assert found(since=NOW - timedelta(hours=1)) == ["otlp", 'quote " and \\ back', "charged"]
    assert found(until=NOW - timedelta(hours=1)) == ["Old Disk Warning"]
    rate = RateCache(reader).rate(Query(since=NOW - timedelta(hours=3), until=NOW + timedelta(minutes=1)), by="api")
    assert rate["bucket"] == 300 and {k: sum(v) for k, v in rate["series"].items()} == {
        "betterstack": 2,
        "baselime": 1,
        "otlp": 1,
    }
    recent = RateCache(reader).rate(Query(since=NOW - timedelta(hours=1), levels=frozenset({"info"})), by="source")
    assert {k: sum(v) for k, v in recent["series"].items()} == {"team": 1}  # by reception time, filtered


def test_the_memory_reader_numbers_events_across_drops():
    sink = JSONMemorySink(max_events=5)
    reader = reader_for(sink)
    sink(batch([{"message": "a"}, {"message": "b"}]))
    sink(batch([{"message": "c"}]))
    first = {e.data["message"]: e.id for e in reader.scan()}
    assert first == {"a": 1, "b": 2, "c": 3}
    sink(batch([{"message": "d"}, {"message": "e"}, {"message": "f"}]))  # a and b dropped
    assert {e.data["message"]: e.id for e in reader.scan()} == {"c": 3, "d": 4, "e": 5, "f": 6}
    assert reader.get(1) is None and reader.get(5).data == {"message": "e"}
    sink.clear()
    assert list(reader.scan()) == [] and reader.cursor() == 6
    sink(batch([{"message": "g"}]))
    assert [(e.id, e.data["message"]) for e in reader.after(6, Query())] == [(7, "g")]


def test_a_json_lines_line_still_being_written_waits(tmp_path):
    path = tmp_path / "e.jsonl"
    sink = JSONLinesSink(path)
    sink(batch([{"message": "whole"}]))
    reader = reader_for(sink)
    whole = path.read_bytes()
    with open(path, "ab") as file:
        file.write(whole[:20])  # half a line, as a writer mid-write leaves it
    assert [e.data["message"] for e in reader.scan()] == ["whole"]
    assert [e.data["message"] for e in reader.search(Query())] == ["whole"]
    cursor = reader.cursor()
    assert cursor == len(whole)
    with open(path, "ab") as file:
        file.write(whole[20:])
    assert [e.data["message"] for e in reader.after(cursor, Query())] == ["whole"]


def test_the_text_index_agrees_with_a_scan_and_stays_complete(tmp_path):
    path = tmp_path / "e.db"
    sink = SQLiteSink(path)
    fill(sink, 300)
    plain = reader_from_url(f"sqlite:///{path}")  # read-only: no index yet
    indexed = reader_for(sink)  # the page's reader: builds the index when a search asks
    assert plain.indexed_up_to() == 0
    for text in ["event 12", "EVENT 2", "xxx", "x", "7.2", '"level":"error"', "no such thing", 'a "quote']:
        expected = [e.id for e in plain.search(Query(limit=0, text=text))]
        assert [e.id for e in indexed.search(Query(limit=0, text=text))] == expected, text
    top = indexed.indexed_up_to()
    assert top == indexed.cursor()
    fill(sink, 20)  # not indexed yet: found by the scan of what is newer
    assert plain.indexed_up_to() == top  # the read-only reader sees and uses the index too
    expected = [e.id for e in plain.search(Query(limit=0, text="event 1"))]
    assert len(expected) > 20
    assert [e.id for e in indexed.search(Query(limit=0, text="event 1"))] == expected
    assert indexed.indexed_up_to() == indexed.cursor()
    # The index is beside the table, not in the sink's way: the sink writes on.
    sink(batch([{"message": "after indexing"}]))
    assert indexed.search(Query(text="after index"))[0].data == {"message": "after indexing"}
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert {"events_fts", "events_fts_indexed"} <= tables
    assert not {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}


def test_an_sqlite_reader_never_writes_unless_it_keeps_the_index(tmp_path):
    path = tmp_path / "e.db"
    sink = SQLiteSink(path)
    sink(batch([{"message": "x"}]))
    sink.close()  # its checkpoints (a thread of their own) done: the file changes no more
    before = path.read_bytes()
    reader = SQLiteReader(path)
    assert [e.data for e in reader.search(Query(text="x"))] == [{"message": "x"}]
    reader.close()
    assert path.read_bytes() == before


def test_the_rate_cache_counts_only_what_is_new_and_agrees_with_a_fresh_count(sink_and_reader):
    sink, make_reader = sink_and_reader
    reader = make_reader()
    minute = NOW.replace(second=0) - timedelta(minutes=30)
    for index in range(40):  # one batch a minute for 40 minutes, the oldest outside the hour's first bucket
        at = minute - timedelta(minutes=10) + timedelta(minutes=index)
        sink(batch([{"message": "m", "level": "info"}] * (index % 4 + 1), source=["web", "team"][index % 2], at=at))
    cache = RateCache(reader)
    window = Query(since=NOW - timedelta(minutes=35), until=NOW + timedelta(minutes=5))
    first = cache.rate(window, by="source")
    assert first["bucket"] == 60 and first["start"] == int((NOW - timedelta(minutes=35)).timestamp()) // 60 * 60
    for index in range(5):
        sink(batch([{"message": "late"}] * 2, source="web", at=NOW + timedelta(seconds=index)))
    again = cache.rate(window, by="source")
    fresh = RateCache(reader).rate(window, by="source")
    assert again == fresh
    assert sum(again["series"]["web"]) == sum(first["series"]["web"]) + 10
    assert cache.rate(window.but(source="team"), by="api") == RateCache(reader).rate(
        window.but(source="team"), by="api"
    )


def test_cursor_at_a_reception_time(sink_and_reader):
    sink, make_reader = sink_and_reader
    reader = make_reader()
    for index in range(30):
        sink(batch([{"message": str(index)}, {"message": "x"}], at=NOW + timedelta(seconds=index)))

    def first_after(cursor: int) -> str:
        return reader.after(cursor, Query(limit=1))[0].data["message"]

    assert first_after(reader.cursor_at(NOW - timedelta(days=1))) == "0"
    assert first_after(reader.cursor_at(NOW + timedelta(seconds=10))) == "10"
    assert first_after(reader.cursor_at(NOW + timedelta(seconds=9, milliseconds=1))) == "10"
    assert reader.cursor_at(NOW + timedelta(days=1)) == reader.cursor()


def test_parse_since():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_since("10m", now=now) == now - timedelta(minutes=10)
    assert parse_since("1.5h", now=now) == now - timedelta(minutes=90)
    assert parse_since("2D", now=now) == now - timedelta(days=2)
    assert parse_since("2026-12-01T10:00:00+02:00") == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert parse_since("2026-12-01T10:00", naive_utc=True) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert parse_since("2026-12-01t10:00:00z") == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # RFC 3339 lower case
    for wrong in ("soon", "z", "10:00z"):
        with pytest.raises(ValueError, match="use a duration such as 30s"):
            parse_since(wrong)


def test_rate_series_has_every_bucket():
    since = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    until = since + timedelta(minutes=3)
    start = int(since.timestamp())
    series = rate_series(
        [(start, "web", 2), (start + 120, "web", 1), (start + 60, "team", 4)], since=since, until=until, bucket=60
    )
    assert series == {"start": start, "bucket": 60, "buckets": 3, "series": {"web": [2, 0, 1], "team": [0, 4, 0]}}
    assert bucket_seconds(since, since + timedelta(hours=1)) == 60
    assert bucket_seconds(since, since + timedelta(days=1)) == 900
    assert bucket_seconds(since, since + timedelta(days=7)) == 3600


def test_rate_series_holds_the_bucket_now_falls_in_at_a_whole_minute():
    """A chart asked for a fraction of a second past a bucket's start holds
    what arrived in that fraction (it once ended a bucket early, then)."""
    since = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    until = since + timedelta(minutes=3, milliseconds=400)
    start = int(since.timestamp())
    series = rate_series([(start + 180, "web", 1)], since=since, until=until, bucket=60)
    assert series["buckets"] == 4 and series["series"] == {"web": [0, 0, 0, 1]}


def test_counts_by_service_follow_the_events_own_services(sink_and_reader):
    """A Baselime batch's events may each name their service (over the header's):
    every reader counts and filters them by the event's own, as it stores it."""
    sink, make_reader = sink_and_reader
    events = [{"message": "a", "service": "a"}, {"message": "b", "service": "b"}, {"message": "c"}]
    sink(batch(events, api="baselime", dataset="logs", service="hdr", labels_in_events=True))
    reader = make_reader()
    counts = sorted((name, count) for _, name, count in reader.rate_counts(Query(limit=0), 60, "service"))
    assert counts == [("a", 1), ("b", 1), ("hdr", 1)]
    only_a = reader.rate_counts(Query(limit=0, service="a"), 60, "source")
    assert [(name, count) for _, name, count in only_a] == [("web", 1)]


def test_an_unknown_or_unreadable_sink_url_is_refused_without_its_password():
    with pytest.raises(ValueError, match=r"unknown sink URL 'mysql://u:\*\*\*@h/db'") as unknown:
        reader_from_url("mysql://u:s3cret@h/db")
    with pytest.raises(ValueError, match="read by its consumers") as stream:
        reader_from_url("redis://:s3cret@127.0.0.1:6379/0?stream=s")
    assert "s3cret" not in str(unknown.value) + str(stream.value)


def test_a_json_lines_cursor_stands_at_the_last_whole_line_behind_a_long_unfinished_one(tmp_path):
    sink = JSONLinesSink(tmp_path / "e.jsonl")
    sink(batch([{"message": "one"}, {"message": "two"}]))
    sink.close()
    whole = (tmp_path / "e.jsonl").stat().st_size
    with open(tmp_path / "e.jsonl", "ab") as file:  # a writer halfway through a line longer than 64 KiB
        file.write(b'{"message": "' + b"x" * 100_000)
    reader = reader_from_url(f"jsonl:///{tmp_path / 'e.jsonl'}")
    assert reader.cursor() == whole  # not 0: a follower would print the whole file again
    assert [event.data["message"] for event in reader.scan()] == ["one", "two"]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_closing_a_sql_reader_closes_the_connection_of_every_thread_that_read(kind, request, tmp_path):
    sink = SQLiteSink(tmp_path / "c.db") if kind == "sqlite" else postgres_sink(request)
    fill(sink, 3)
    made = []

    class Recording(type(reader_for(sink))):  # the sink's own reader, with each connection it opens kept
        def connect(self):
            made.append(super().connect())
            return made[-1]

    reader = Recording.for_sink(sink)

    def read() -> None:
        assert len(reader.search(Query())) == 6

    read()  # this thread's
    have_read, done = threading.Barrier(5, timeout=10), threading.Event()

    def read_and_stay() -> None:
        read()
        have_read.wait()
        done.wait(10)

    threads = [threading.Thread(target=read_and_stay) for _ in range(4)]
    for thread in threads:
        thread.start()
    have_read.wait()  # four threads that read, still there
    assert len(made) == 5 and not any(is_closed(connection) for connection in made)
    reader.close()
    assert all(is_closed(connection) for connection in made)
    done.set()
    for thread in threads:
        thread.join(10)
    read()  # a reader closed reads again, on a new connection
    assert len(made) == 6
    reader.close()
    assert is_closed(made[-1])
    sink.close()


def is_closed(connection) -> bool:
    if isinstance(connection, sqlite3.Connection):
        try:
            connection.execute("SELECT 1")
        except sqlite3.ProgrammingError:
            return True
        return False
    return bool(connection.closed)


def test_a_sql_reader_closes_the_connections_of_threads_that_ended(tmp_path):
    sink = SQLiteSink(tmp_path / "d.db")
    fill(sink, 2)
    made = []

    class Recording(SQLiteReader):
        def connect(self):
            made.append(super().connect())
            return made[-1]

    reader = Recording(sink.path)

    def read() -> None:
        reader.search(Query())

    for _ in range(20):  # short-lived threads, as a host's may be
        thread = threading.Thread(target=read)
        thread.start()
        thread.join(10)
    # Each one's connection is closed as the next opens its own: open are only
    # this thread's (made as the reader checked the file) and the last one's.
    assert len(made) == 21
    assert [is_closed(connection) for connection in made] == [False] + [True] * 19 + [False]
    reader.close()
    sink.close()


def test_the_memory_readers_fingerprint_changes_whenever_a_batch_is_kept_even_after_drops():
    # A follower looks now and then: between two looks, batches may be kept and
    # dropped, and a new batch may take the address of one dropped since. The
    # fingerprint must change all the same (an id() of the newest did not).
    sink = JSONMemorySink(max_events=1)
    reader = reader_for(sink)
    missed = 0
    for i in range(100):
        sink(batch([{"message": f"{i} a"}]))
        looked = reader.fingerprint()
        sink(batch([{"message": f"{i} b"}]))
        sink(batch([{"message": f"{i} c"}]))
        missed += reader.fingerprint() == looked
    assert missed == 0
    looked = reader.fingerprint()
    sink.clear()
    assert reader.fingerprint() != looked
