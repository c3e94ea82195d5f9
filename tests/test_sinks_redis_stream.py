"""The Redis Streams sink against a real redis-server (tests/redis_fixture.py), through both adapters."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

redis = pytest.importorskip("redis")

from clients import PREFIX, make_client  # noqa: E402

from ingest_mw import BaselimeAPI, Batch, BetterStackAPI, Event, sink_from_url  # noqa: E402
from ingest_mw.sinks import SinkUnavailable, StorageFull  # noqa: E402
from ingest_mw.sinks.redis_stream import RedisStreamSink  # noqa: E402

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BS = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
BL = {"x-api-key": "key", "Content-Type": "application/json", "x-service": "svc"}
DOCS = Path(__file__).parent.parent / "docs" / "sinks.md"


def entries(url: str, stream: str = "ingest_mw:events") -> list[dict[str, str]]:
    client = redis.Redis.from_url(url, decode_responses=True)
    return [fields for _, fields in client.xrange(stream)]


def test_every_api_through_both_adapters_reads_back_as_sent(adapter, redis_server):
    sink = sink_from_url(redis_server.url)
    client = make_client(adapter, [BetterStackAPI({"web": "tok"}), BaselimeAPI({"team": "key"})], sink)
    sent = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=250000)
    betterstack = [{"dt": sent.isoformat(), "message": "one"}, {"message": "no time", "nul": "a\u0000b"}]
    baselime = [{"message": "two", "nested": {"n": [1, 2.5, None]}}]
    assert client.request("POST", PREFIX + "/", json.dumps(betterstack).encode(), BS).status == 202
    assert client.request("POST", PREFIX + "/v1/ds", json.dumps(baselime).encode(), BL).status == 202
    got = entries(redis_server.url)
    assert [json.loads(entry.pop("data")) for entry in got] == betterstack + baselime
    received = got[0]["received_at"]
    assert datetime.fromisoformat(received) > sent
    assert got == [
        {"received_at": received, "api": "betterstack", "source": "web", "dt": sent.isoformat(timespec="microseconds")},
        {"received_at": received, "api": "betterstack", "source": "web", "dt": received},
        {
            "received_at": got[2]["received_at"],
            "api": "baselime",
            "source": "team",
            "dataset": "ds",
            "service": "svc",
            "dt": got[2]["received_at"],
        },
    ]
    sink.close()


def test_maxlen_trims_the_stream_about_there(redis_server):
    sink = RedisStreamSink(redis_server.url, stream="trimmed", maxlen=100)
    for _ in range(5):
        sink(Batch("betterstack", "s", T0, [Event(T0, {"i": i}) for i in range(500)]))
    length = redis.Redis.from_url(redis_server.url).xlen("trimmed")
    assert 100 <= length < 500  # "MAXLEN ~": whole nodes are trimmed, so a few more may stay
    sink.close()


def test_a_batch_is_all_there_or_not_at_all(adapter, redis_server):
    redis.Redis.from_url(redis_server.url).set("not-a-stream", "x")
    sink = RedisStreamSink(redis_server.url, stream="not-a-stream")
    client = make_client(adapter, BetterStackAPI({"web": "tok"}), sink)
    # The stream's key holds another type: nothing stored until that is mended, and
    # the client is to retry later.
    assert client.request("POST", PREFIX + "/", b'[{"a": 1}, {"a": 2}]', BS).status == 503
    assert redis.Redis.from_url(redis_server.url).get("not-a-stream") == b"x"
    # The check (start-up, /readyz) says so, on both faces, not only a PING's success.
    for check in (sink.check, lambda: asyncio.run(sink.acheck())):
        with pytest.raises(SinkUnavailable) as raised:
            check()
        assert str(raised.value).endswith(
            "(stream not-a-stream): its key holds a string, not a stream:"
            " give the sink another stream= or delete that key"
        )


def test_redis_stopped_mid_load_recovers_without_a_restart(adapter, redis_server, caplog):
    caplog.set_level(logging.INFO)
    sink = RedisStreamSink(f"redis://:{'pw-s3cret'}@127.0.0.1:{redis_server.port}/0", timeout=1)
    redis_server.stop()
    redis_server.process = None
    # A server with a password, so that the tests see it kept out of every message.
    command = [redis_server.executable, "--port", str(redis_server.port), "--bind", "127.0.0.1", "--save", ""]

    def start() -> None:
        redis_server.process = subprocess.Popen(
            [*command, "--requirepass", "pw-s3cret"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                sink.check()
                return
            except SinkUnavailable:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    start()
    client = make_client(adapter, BetterStackAPI({"web": "tok"}), sink)
    acknowledged, refused = [], []
    for n in range(30):  # bounded: 30 requests
        if n == 10:
            redis_server.stop()
            with pytest.raises(SinkUnavailable) as raised:
                sink.check()
            assert "pw-s3cret" not in str(raised.value) and "redis://:***@127.0.0.1" in str(raised.value)
        if n == 14:
            start()
        reply = client.request("POST", PREFIX + "/", json.dumps([{"n": n}, {"n": n}]).encode(), BS)
        (acknowledged if reply.status == 202 else refused).append((n, reply.status, reply.headers.get("retry-after")))
    assert [n for n, *_ in refused] == [10, 11, 12, 13] and {(s, r) for _, s, r in refused} == {(503, "1")}
    assert [n for n, *_ in acknowledged] == [*range(10), *range(14, 30)]
    stored = [json.loads(e["data"])["n"] for e in entries(f"redis://:pw-s3cret@127.0.0.1:{redis_server.port}/0")]
    assert stored == [n for n in range(14, 30) for _ in range(2)]  # a restarted server keeps no data here
    assert "pw-s3cret" not in caplog.text
    mine = [r for r in caplog.records if r.name == "ingest_mw.sinks"]
    assert [r.levelname for r in mine] == ["ERROR", "WARNING"]
    sink.close()


def test_urls_and_options(redis_server):
    sink = sink_from_url(redis_server.url + "?stream=app:logs&maxlen=5000&health_check_interval=10")
    assert isinstance(sink, RedisStreamSink) and (sink.stream, sink.maxlen) == ("app:logs", 5000)
    sink.check()
    assert isinstance(sink_from_url("rediss://:pw@example.invalid:6380/1"), RedisStreamSink)
    for bad in ("redis://:pw-secret@h/0?maxlen=0", "redis://:pw-secret@h/0?stream="):
        with pytest.raises(ValueError, match="give") as raised:
            sink_from_url(bad)
        assert "pw-secret" not in str(raised.value)


def test_the_consumer_group_reader_in_the_docs_reads_and_acknowledges(redis_server, capsys):
    sink = RedisStreamSink(redis_server.url)
    sink(Batch("betterstack", "web", T0, [Event(T0, {"message": "hello", "i": i}) for i in range(3)]))
    (code,) = re.findall(r"```python\n(# consumer\.py.*?)```", DOCS.read_text(), re.DOTALL)
    # The example as a reader copies it, pointed at this server, its endless loop run twice, briefly.
    code = code.replace('"redis://localhost:6379/0"', repr(redis_server.url)).replace(
        "while True:", "for _ in range(2):"
    )
    code = code.replace("block=5000", "block=10")
    assert code.count(redis_server.url) == 1 and "for _ in range(2):" in code and "block=10" in code
    exec(compile(code, str(DOCS), "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"web betterstack {T0.isoformat(timespec='microseconds')} hello {i}" for i in range(3)]
    client = redis.Redis.from_url(redis_server.url)
    assert client.xpending("ingest_mw:events", "archivers")["pending"] == 0  # all acknowledged
    sink.close()


def test_a_frozen_server_fails_a_batch_within_the_timeout_on_both_faces(redis_server):
    import asyncio
    import signal

    sink = RedisStreamSink(redis_server.url, timeout=0.5)
    sink(Batch("betterstack", "s", T0, [Event(T0, {"i": 0})]))  # connected before the freeze
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        for store in (sink, lambda batch: asyncio.run(sink.acall(batch))):
            started = time.monotonic()
            with pytest.raises(SinkUnavailable):
                store(Batch("betterstack", "s", T0, [Event(T0, {"i": 1})]))
            assert time.monotonic() - started < 3
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    sink(Batch("betterstack", "s", T0, [Event(T0, {"i": 2})]))
    assert [json.loads(e["data"])["i"] for e in entries(redis_server.url)][-1] == 2
    sink.close()


def test_events_that_name_their_own_service_keep_it(adapter, redis_server):
    sink = RedisStreamSink(redis_server.url)
    events = [{"service": "a", "n": 1}, {"n": 2}, {"service": "b", "namespace": "x", "n": 3}]
    client = make_client(adapter, BaselimeAPI({"team": "key"}), sink)
    assert client.request("POST", PREFIX + "/v1/ds", json.dumps(events).encode(), BL).status == 202
    got = entries(redis_server.url)
    assert [(e.get("service"), e.get("namespace"), json.loads(e["data"])) for e in got] == [
        ("a", None, events[0]),
        ("svc", None, events[1]),
        ("b", "x", events[2]),
    ]
    sink.close()


def test_a_large_batch_is_made_off_the_event_loop(monkeypatch, redis_server):
    # Its XADD commands are made in a thread of the large-batch pool, so that
    # the loop goes on answering meanwhile.
    from ingest_mw.sinks import redis_stream
    from ingest_mw.sinks.base import ON_LOOP_EVENTS

    seen: list[str] = []
    made = redis_stream.xadd_commands

    def watched(*args):
        seen.append(threading.current_thread().name)
        return made(*args)

    monkeypatch.setattr(redis_stream, "xadd_commands", watched)
    sink = RedisStreamSink(redis_server.url, stream="big")

    async def store() -> None:
        await sink.acall(Batch("betterstack", "s", T0, [Event(T0, {"n": 1})]))
        await sink.acall(Batch("betterstack", "s", T0, [Event(T0, {"n": n}) for n in range(ON_LOOP_EVENTS + 1)]))
        await sink.aclose()

    asyncio.run(store())
    sink.close()
    assert seen[0] == "MainThread" and seen[1].startswith("ingest_mw-large-batch")
    assert len(entries(redis_server.url, "big")) == ON_LOOP_EVENTS + 2


def test_a_user_allowed_only_what_storing_needs_passes_the_check_and_stores(redis_server):
    # An ACL user that may XADD in MULTI/EXEC and PING, not TYPE: the check
    # cannot see the key's type, and proves what it can.
    admin = redis.Redis.from_url(redis_server.url)
    admin.execute_command("ACL", "SETUSER", "writer", "on", ">writer-pw", "~acl:*", "+xadd", "+multi", "+exec", "+ping")
    try:
        sink = RedisStreamSink(f"redis://writer:writer-pw@127.0.0.1:{redis_server.port}/0", stream="acl:events")
        sink.check()
        asyncio.run(sink.acheck())
        sink(Batch("betterstack", "s", T0, [Event(T0, {"n": 1})]))
        assert len(entries(redis_server.url, "acl:events")) == 1
        sink.close()
    finally:
        admin.execute_command("ACL", "DELUSER", "writer")


def test_a_redis_at_its_maxmemory_without_eviction_fails_the_check_until_it_has_room(redis_server):
    # A real Redis told to hold less than it does: it refuses every XADD (OOM),
    # and the check, sync and async, says so before a batch fails on it.
    admin = redis.Redis.from_url(redis_server.url)
    sink = sink_from_url(redis_server.url)
    sink.check()
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1024)
    try:
        for check in (sink.check, lambda: asyncio.run(sink.acheck())):
            with pytest.raises(StorageFull, match=r"Redis is past its maxmemory \(.* MiB of 1024 bytes, noeviction\)"):
                check()
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            admin.xadd("ingest_mw:events", {"data": "{}"})
        admin.config_set("maxmemory-policy", "allkeys-lru")  # it makes room by evicting: writable
        sink.check()
    finally:
        admin.config_set("maxmemory", 0)
    sink.check()
    asyncio.run(sink.acheck())
    sink.close()


def test_a_redis_that_renamed_info_away_is_still_ready_and_stores():
    # A common hardening step (rename-command INFO ""): the memory is not
    # asked, as for a user that may not INFO; the rest of the check holds.
    import shutil

    from redis_fixture import RedisServer

    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed (bash .ci/run installs it)")
    server = RedisServer(executable, arguments=("--rename-command", "INFO", ""))
    server.start()
    try:
        sink = sink_from_url(server.url)
        with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
            redis.Redis.from_url(server.url).info("memory")
        sink.check()
        asyncio.run(sink.acheck())
        sink(Batch("betterstack", "web", T0, [Event(T0, {"message": "kept"})]))
        assert [json.loads(entry["data"]) for entry in entries(server.url)] == [{"message": "kept"}]
        sink.close()
    finally:
        server.stop()
