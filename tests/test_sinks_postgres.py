"""The PostgreSQL sink against a real server (tests/postgres_fixture.py), through both adapters."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgpack
import pytest

psycopg = pytest.importorskip("psycopg")

from clients import PREFIX, make_client  # noqa: E402

from ingest_mw import BaselimeAPI, Batch, BetterStackAPI, Event, sink_from_url  # noqa: E402
from ingest_mw.sinks import SinkUnavailable  # noqa: E402
from ingest_mw.sinks.postgres import ESCAPED_JSON_KEY, MSGPACK_KEY, PostgresSink, ddl  # noqa: E402

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BS = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
DOCS = Path(__file__).parent.parent / "docs" / "sinks.md"
BL = {"x-api-key": "key", "Content-Type": "application/json", "x-service": "svc", "x-namespace": "ns"}


def read(server, table: str) -> list[dict]:
    with psycopg.connect(server.url) as connection:
        cursor = connection.execute(
            f"SELECT received_at, dt, api, source, dataset, service, namespace, data FROM {table} ORDER BY id"
        )
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


@pytest.fixture
def sink(postgres_server, pg_table):
    made = PostgresSink(postgres_server.url, table=pg_table, pool_size=2)
    yield made
    made.close()


def test_every_api_through_both_adapters_reads_back_as_sent(adapter, postgres_server, pg_table, sink):
    client = make_client(adapter, [BetterStackAPI({"web": "tok"}), BaselimeAPI({"team": "key"})], sink)
    sent = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=123456)
    betterstack = [{"dt": sent.isoformat(), "message": "one", "n": 1.5}, {"message": "no time", "tags": ["a", "b"]}]
    baselime = [{"timestamp": sent.timestamp() * 1000, "message": "two", "nested": {"deep": [1, None, True]}}]
    before = datetime.now(UTC)
    assert client.request("POST", PREFIX + "/", json.dumps(betterstack).encode(), BS).status == 202
    assert client.request("POST", PREFIX + "/v1/ds", json.dumps(baselime).encode(), BL).status == 202
    after = datetime.now(UTC)
    rows = read(postgres_server, pg_table)
    assert [row["data"] for row in rows] == betterstack + baselime
    assert [(row["api"], row["source"], row["dataset"], row["service"], row["namespace"]) for row in rows] == [
        ("betterstack", "web", None, None, None),
        ("betterstack", "web", None, None, None),
        ("baselime", "team", "ds", "svc", "ns"),
    ]
    assert all(before <= row["received_at"] <= after for row in rows)
    # The sent time (to the millisecond for Baselime's milliseconds); the reception time without one.
    assert rows[0]["dt"] == sent and rows[1]["dt"] == rows[1]["received_at"]
    assert abs(rows[2]["dt"] - sent) < timedelta(milliseconds=1)


def test_values_jsonb_refuses_are_stored_losslessly(adapter, postgres_server, pg_table, sink):
    client = make_client(adapter, BetterStackAPI({"web": "tok"}), sink)
    nul = [{"message": "a\u0000b", "key\u0000": 1, "ok": "back\\slash\ttab\nline"}, {"plain": "x"}]
    assert client.request("POST", PREFIX + "/", json.dumps(nul).encode(), BS).status == 202
    packed = msgpack.packb([{"bin": b"\xff\x00raw", "when": T0}], datetime=True)
    headers = {"Authorization": "Bearer tok", "Content-Type": "application/msgpack"}
    assert client.request("POST", PREFIX + "/", packed, headers).status == 202
    escaped, plain, binary = (row["data"] for row in read(postgres_server, pg_table))
    assert set(escaped) == {ESCAPED_JSON_KEY} and json.loads(escaped[ESCAPED_JSON_KEY]) == nul[0]
    assert plain == {"plain": "x"}
    assert set(binary) == {MSGPACK_KEY}
    restored = msgpack.unpackb(base64.b64decode(binary[MSGPACK_KEY]), timestamp=3, strict_map_key=False)
    assert restored == {"bin": b"\xff\x00raw", "when": T0}


def test_a_host_batch_of_event_pairs_and_odd_metadata(postgres_server, pg_table, sink):
    sink(Batch("baselime", "tab\there", T0, [Event(T0, {"i": 1})], dataset="back\\slash", service="new\nline"))
    (row,) = read(postgres_server, pg_table)
    assert (row["source"], row["dataset"], row["service"], row["namespace"]) == (
        "tab\there",
        "back\\slash",
        "new\nline",
        None,
    )
    assert row["dt"] == T0 == row["received_at"] and row["data"] == {"i": 1}


def test_check_and_a_database_stopped_mid_load_recovers_without_a_restart(
    adapter, postgres_server, pg_table, sink, caplog
):
    caplog.set_level(logging.INFO)
    sink.timeout = 0.5  # a shorter wait for a connection while the database is down keeps the test short
    client = make_client(adapter, BetterStackAPI({"web": "tok"}), sink)
    sink.check()
    acknowledged, refused = [], []
    stopped = restarted = False
    for n in range(40):  # bounded: 40 requests
        if n == 10:
            postgres_server.stop()
            stopped = True
        if n == 14:
            postgres_server.start()
            restarted = True
        body = json.dumps([{"n": n, "i": i} for i in range(5)]).encode()
        reply = client.request("POST", PREFIX + "/", body, BS)
        status = reply.status
        (acknowledged if status == 202 else refused).append((n, status))
        if status != 202:  # the database is down: retry later
            assert reply.headers.get("retry-after") == "1"
        if stopped and not restarted:
            with pytest.raises(SinkUnavailable) as raised:
                sink.check()
            message = str(raised.value)
            assert "\n" not in message and pg_table in message and "***" in message
    assert stopped and restarted
    stored = [(row["data"]["n"], row["data"]["i"]) for row in read(postgres_server, pg_table)]
    assert len(stored) == len(set(stored))  # exactly once
    assert {n for n, _ in acknowledged} <= {n for n, _ in stored}
    assert {(n, i) for n, _ in acknowledged for i in range(5)} <= set(stored)
    assert refused and all(status == 503 for _, status in refused)
    assert [n for n, _ in refused] == [10, 11, 12, 13]  # down from the stop; stores again at once after the start
    assert [n for n, _ in acknowledged] == [*range(10), *range(14, 40)]  # recovered, no restart
    sink.check()
    assert postgres_server.password not in caplog.text
    mine = [r for r in caplog.records if r.name == "ingest_mw.sinks"]
    assert [r.levelname for r in mine] == ["ERROR", "WARNING"]  # one line down, one line back
    assert all("\n" not in r.getMessage() for r in mine)


def test_a_commit_interrupted_by_a_crash_is_never_acknowledged(postgres_server, pg_table, sink):
    """Batches from several threads while the server crashes: every one that
    returned is in the table once; none that raised was acknowledged."""
    sink.timeout = 0.5
    done: list[int] = []
    errors: list[int] = []

    def writer(base: int) -> None:
        for k in range(40):
            n = base + k
            try:
                sink(Batch("betterstack", "s", T0, [Event(T0, {"n": n})]))
                done.append(n)
            except SinkUnavailable:
                errors.append(n)

    threads = [threading.Thread(target=writer, args=(1000 * t,)) for t in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    postgres_server.stop("immediate")
    time.sleep(0.3)
    postgres_server.start()
    for thread in threads:
        thread.join(timeout=60)
    stored = [row["data"]["n"] for row in read(postgres_server, pg_table)]
    assert len(stored) == len(set(stored)) and set(done) <= set(stored)
    assert len(done) + len(errors) == 120


def test_the_ddl_is_exposed_and_a_partitioned_table_takes_the_same_copy(postgres_server, pg_table):
    assert "data jsonb NOT NULL" in ddl("logs.events") and "ON logs.events (dt)" in ddl("logs.events")
    assert ddl("events").strip() in DOCS.read_text()  # the documented DDL is the one the sink runs
    # The partitioned table of docs/sinks.md, as a team would paste it, under this test's table name.
    (partitioned,) = re.findall(
        r"```sql\n(CREATE TABLE events \(.*?PARTITION BY RANGE.*?)```", DOCS.read_text(), re.DOTALL
    )
    partitioned = partitioned.replace("events", pg_table)
    with psycopg.connect(postgres_server.url, autocommit=True) as connection:
        connection.execute(partitioned)
    sink = PostgresSink(postgres_server.url, table=pg_table, create_table=False)
    try:
        sink(Batch("betterstack", "s", T0, [Event(T0, {"may": 1}), Event(T0 + timedelta(days=40), {"june": 1})]))
    finally:
        sink.close()
    with psycopg.connect(postgres_server.url) as connection:
        may = connection.execute(f"SELECT data FROM {pg_table}_2024_05").fetchall()
        rest = connection.execute(f"SELECT data FROM {pg_table}_default").fetchall()
        connection.execute(f"DROP TABLE {pg_table}_2024_05, {pg_table}_default")
    assert may == [({"may": 1},)] and rest == [({"june": 1},)]


def test_urls_and_options(postgres_server):
    sink = sink_from_url(postgres_server.url + "?table=other.t_1&pool_size=3&sslmode=disable")
    assert isinstance(sink, PostgresSink)
    assert (sink.table, sink.pool_size) == ("other.t_1", 3)
    assert "sslmode=disable" in sink.conninfo and "table" not in sink.conninfo
    assert postgres_server.password not in repr(sink) and "***" in repr(sink)
    for bad, message in [
        ("postgresql://u:pw-secret@h/db?table=1bad", "table='1bad'"),
        ("postgresql://u:pw-secret@h/db?table=a.b.c", "schema.table"),
        ("postgres://u:pw-secret@h/db?pool_size=0", "pool_size='0'"),
    ]:
        with pytest.raises(ValueError, match="give") as raised:
            sink_from_url(bad)
        assert message in str(raised.value) and "pw-secret" not in str(raised.value)


def test_an_unreachable_database_is_said_in_one_line_without_the_password():
    sink = PostgresSink("postgresql://ingest:hunter2-pw@127.0.0.1:1/db", timeout=1)
    with pytest.raises(SinkUnavailable) as raised:
        sink.check()
    message = str(raised.value)
    assert message.startswith("PostgreSQL sink postgresql://ingest:***@127.0.0.1:1/db (table events): ")
    assert "hunter2" not in message and "\n" not in message
    with pytest.raises(SinkUnavailable):
        sink(Batch("betterstack", "s", T0, [Event(T0, {})]))
    sink.close()


def test_a_batch_the_database_refuses_is_no_202_and_the_next_is_stored(adapter, postgres_server, pg_table):
    """A constraint of the host's own schema refuses a batch: all of it, and nothing else."""
    with psycopg.connect(postgres_server.url, autocommit=True) as connection:
        connection.execute(ddl(pg_table))
        connection.execute(f"ALTER TABLE {pg_table} ADD CONSTRAINT no_secrets CHECK (NOT data ? 'password')")
    sink = PostgresSink(postgres_server.url, table=pg_table, create_table=False)
    client = make_client(adapter, BetterStackAPI({"web": "tok"}), sink)
    refused = json.dumps([{"n": 1}, {"n": 2, "password": "x"}]).encode()
    assert client.request("POST", PREFIX + "/", refused, BS).status == 500
    assert client.request("POST", PREFIX + "/", json.dumps([{"n": 3}]).encode(), BS).status == 202
    assert [row["data"] for row in read(postgres_server, pg_table)] == [{"n": 3}]
    sink.close()


def test_events_that_name_their_own_service_keep_it(adapter, postgres_server, pg_table, sink):
    events = [{"service": "a", "n": 1}, {"n": 2}, {"service": "b", "namespace": "x", "n": 3}]
    client = make_client(adapter, BaselimeAPI({"team": "key"}), sink)
    assert client.request("POST", PREFIX + "/v1/ds", json.dumps(events).encode(), BL).status == 202
    rows = read(postgres_server, pg_table)
    assert [(r["service"], r["namespace"], r["data"]) for r in rows] == [
        ("a", "ns", events[0]),
        ("svc", "ns", events[1]),
        ("b", "x", events[2]),
    ]


@pytest.fixture
def role_with(postgres_server, pg_table):
    """A role of this test's own that may do only ``privileges`` on the table its
    DBA made (the sink's own DDL, by the superuser): its connection URL."""
    roles = []

    def make(*privileges: str) -> str:
        role = f"{pg_table}_r{len(roles)}"
        with psycopg.connect(postgres_server.url, autocommit=True) as connection:
            connection.execute(ddl(pg_table))
            connection.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'role-pw'")
            connection.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            for privilege in privileges:
                connection.execute(f"GRANT {privilege} ON {pg_table} TO {role}")
        roles.append(role)
        return f"postgresql://{role}:role-pw@127.0.0.1:{postgres_server.port}/postgres"

    yield make
    with psycopg.connect(postgres_server.url, autocommit=True) as connection:
        for role in roles:
            connection.execute(f"DROP OWNED BY {role}")
            connection.execute(f"DROP ROLE {role}")


def test_a_role_that_may_only_insert_into_its_dbas_table_stores(adapter, postgres_server, pg_table, role_with):
    # CREATE TABLE/INDEX IF NOT EXISTS would need CREATE on the schema and the
    # index's ownership even though both exist: the sink makes the table only
    # when it is missing.
    sink = PostgresSink(role_with("INSERT"), table=pg_table)
    sink.check()
    client = make_client(adapter, BetterStackAPI({"web": "tok"}), sink)
    assert client.request("POST", PREFIX + "/", b'{"n": 1}', BS).status == 202
    assert [row["data"] for row in read(postgres_server, pg_table)] == [{"n": 1}]
    sink.close()


def test_the_check_refuses_a_role_that_may_not_insert(postgres_server, pg_table, role_with):
    sink = PostgresSink(role_with("SELECT"), table=pg_table)
    for check in (sink.check, lambda: asyncio.run(sink.acheck())):
        with pytest.raises(SinkUnavailable) as raised:
            check()
        role = f"{pg_table}_r0"
        assert str(raised.value) == (
            f"PostgreSQL sink postgresql://{role}:***@127.0.0.1:{postgres_server.port}/postgres (table {pg_table}):"
            f" role {role} may not INSERT into {pg_table}: GRANT INSERT ON {pg_table} TO {role}"
        )
    sink.close()


def test_a_large_batch_is_made_off_the_event_loop(monkeypatch, postgres_server, pg_table, sink):
    # Its COPY text (tens of milliseconds per 5,000 events) is made in a thread
    # of the large-batch pool, so that the loop goes on answering meanwhile.
    from ingest_mw.sinks import postgres
    from ingest_mw.sinks.base import ON_LOOP_EVENTS

    seen: list[str] = []
    made = postgres.copy_text

    def watched(batch):
        seen.append(threading.current_thread().name)
        return made(batch)

    monkeypatch.setattr(postgres, "copy_text", watched)

    async def store() -> None:
        await sink.acall(Batch("betterstack", "s", T0, [Event(T0, {"n": 1})]))
        await sink.acall(Batch("betterstack", "s", T0, [Event(T0, {"n": n}) for n in range(ON_LOOP_EVENTS + 1)]))
        await sink.aclose()

    asyncio.run(store())
    assert seen[0] == "MainThread" and seen[1].startswith("ingest_mw-large-batch")
    assert len(read(postgres_server, pg_table)) == ON_LOOP_EVENTS + 2


def test_a_statement_the_database_cancels_is_a_503_and_keeps_the_pool(postgres_server, pg_table):
    # statement_timeout cancels the COPY (a trigger makes it slow): the batch is
    # not stored and is to be sent again (a SinkUnavailable: 503), but the
    # connection is as good as before, so the pool is not dropped and made anew
    # for every such batch.
    with psycopg.connect(postgres_server.url, autocommit=True) as connection:
        connection.execute(ddl(pg_table))
        connection.execute(
            f"CREATE FUNCTION {pg_table}_slow() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$"
        )
        connection.execute(
            f"CREATE TRIGGER slow BEFORE INSERT ON {pg_table} FOR EACH ROW EXECUTE FUNCTION {pg_table}_slow()"
        )
    sink = PostgresSink(postgres_server.url + "?options=-c%20statement_timeout%3D50", table=pg_table)
    one = Batch("betterstack", "s", T0, [Event(T0, {"n": 1})])

    def cancelled(store) -> type[Exception]:
        with pytest.raises(SinkUnavailable, match="statement timeout") as raised:
            store()
        return type(raised.value)

    try:
        assert cancelled(lambda: sink(one)) is SinkUnavailable  # not BatchRefused: a 503
        pool = sink._pool
        assert cancelled(lambda: sink(one)) is SinkUnavailable
        assert sink._pool is pool is not None

        async def twice() -> list[object]:
            pools = []
            for _ in range(2):
                with pytest.raises(SinkUnavailable, match="statement timeout"):
                    await sink.acall(one)
                pools.append(sink._apool)
            await sink.aclose()
            return pools

        first, second = asyncio.run(twice())
        assert first is second is not None
        assert read(postgres_server, pg_table) == []
    finally:
        sink.close()
        with psycopg.connect(postgres_server.url, autocommit=True) as connection:
            connection.execute(f"DROP TABLE {pg_table}")
            connection.execute(f"DROP FUNCTION {pg_table}_slow()")


def test_while_the_database_is_down_a_batch_fails_within_a_second_not_the_timeout(postgres_server, pg_table):
    from ingest_mw.sinks.postgres import OUTAGE_WAIT

    sink = PostgresSink(postgres_server.url, table=pg_table, timeout=5.0)
    one = Batch("betterstack", "s", T0, [Event(T0, {"n": 1})])
    sink(one)
    postgres_server.stop()
    try:
        waits = []
        for _ in range(3):  # bounded: three batches while it is down
            started = time.monotonic()
            with pytest.raises(SinkUnavailable):
                sink(one)
            waits.append(time.monotonic() - started)

        async def async_face() -> float:
            started = time.monotonic()
            with pytest.raises(SinkUnavailable):
                await sink.acall(one)
            await sink.aclose()
            return time.monotonic() - started

        waits.append(asyncio.run(async_face()))
    finally:
        postgres_server.start()
    # The first finds its connection gone at once; the others wait for a new
    # one at most OUTAGE_WAIT (1 s), not the 5 s timeout (they took 5.0 s each).
    assert OUTAGE_WAIT <= 1.0 and max(waits) < 2.5, waits
    sink(one)  # back: stored again, at once
    assert len(read(postgres_server, pg_table)) == 2
    sink.close()


def test_a_lock_timeout_is_a_503_and_keeps_the_pool(postgres_server, pg_table):
    # Another session holds the table: the COPY waits lock_timeout, then the
    # database refuses it on a sound connection; the batch is to be sent again.
    with psycopg.connect(postgres_server.url, autocommit=True) as connection:
        connection.execute(ddl(pg_table))
    sink = PostgresSink(postgres_server.url + "?options=-c%20lock_timeout%3D100", table=pg_table)
    one = Batch("betterstack", "s", T0, [Event(T0, {"n": 1})])
    sink(one)
    pool = sink._pool
    with psycopg.connect(postgres_server.url) as holder:
        holder.execute(f"LOCK TABLE {pg_table} IN ACCESS EXCLUSIVE MODE")
        for _ in range(2):
            with pytest.raises(SinkUnavailable, match="lock timeout") as raised:
                sink(one)
            assert type(raised.value) is SinkUnavailable  # a 503, not BatchRefused
        assert sink._pool is pool
    sink(one)
    assert sink._pool is pool and len(read(postgres_server, pg_table)) == 2
    sink.close()


def test_a_row_too_large_for_a_hosts_index_is_refused_alone_as_a_500(adapter, postgres_server, pg_table):
    # Class 54 (program limit exceeded) is the batch's own: sent again it would
    # be refused again, so no 503, and the pool and the outage log stay as they are.
    import secrets

    with psycopg.connect(postgres_server.url, autocommit=True) as connection:
        connection.execute(ddl(pg_table))
        connection.execute(f"CREATE INDEX {pg_table}_m ON {pg_table} ((data->>'m'))")
    sink = PostgresSink(postgres_server.url, table=pg_table)
    client = make_client(adapter, BetterStackAPI({"web": "tok"}), sink)
    huge = json.dumps({"m": secrets.token_hex(3000)}).encode()  # 6,000 characters, incompressible
    assert client.request("POST", PREFIX + "/", huge, BS).status == 500
    assert client.request("POST", PREFIX + "/", b'{"m": "small"}', BS).status == 202
    assert [row["data"] for row in read(postgres_server, pg_table)] == [{"m": "small"}]
    sink.close()
