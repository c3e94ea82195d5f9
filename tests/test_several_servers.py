"""Two ``ingest-mw serve`` processes sharing one Redis (rate limit) and one PostgreSQL
(events): mixed concurrent load on both, one killed with -9 mid-load. Every
acknowledged event is stored exactly once, and the limit held across both."""

from __future__ import annotations

import http.client
import itertools
import json
import signal
import threading

import msgpack
import pytest
from serve_process import Server

psycopg = pytest.importorskip("psycopg")

LIMIT = 60  # requests a minute per client, for both servers together
THREADS, REQUESTS = 3, 30  # 90 requests: 45 to each server, more than the limit only together
KILL_AFTER = 20  # answers from the first server before it is killed


def body_for(kind: str, ids: list[str]) -> tuple[str, bytes, dict[str, str]]:
    events = [{"id": event_id, "message": f"event {event_id}", "level": "info"} for event_id in ids]
    if kind == "betterstack-json":
        return "/", json.dumps(events).encode(), {"Authorization": "Bearer tok", "Content-Type": "application/json"}
    if kind == "betterstack-ndjson":
        body = "\n".join(json.dumps(event) for event in events).encode()
        return "/", body, {"Authorization": "Bearer tok", "Content-Type": "application/x-ndjson"}
    if kind == "betterstack-msgpack":
        return "/", msgpack.packb(events), {"Authorization": "Bearer tok", "Content-Type": "application/msgpack"}
    return "/v1/several", json.dumps(events).encode(), {"x-api-key": "key", "Content-Type": "application/json"}


KINDS = ("betterstack-json", "baselime", "betterstack-ndjson", "betterstack-msgpack")


def test_two_servers_one_redis_limit_one_postgres_one_killed(postgres_server, pg_table, redis_server):
    args = ["--sink", f"{postgres_server.url}?table={pg_table}", "--token", "web=tok", "--api-key", "team=key"]
    args += ["--rate-limit", f"{LIMIT}/minute", "--rate-limit-storage", redis_server.url]
    # A loaded machine may take Redis past the default 0.25 s storage timeout, and
    # the limit then fails open (a request accepted uncounted): not what is tested here.
    args += ["--rate-limit-storage-timeout", "10"]
    first, second = Server(args), Server(args)
    servers = [first, second]
    lock = threading.Lock()
    answers: list[tuple[int, int, list[str]]] = []  # (server index, status, event ids)
    unanswered: list[list[str]] = []
    first_answered = 0
    counter = itertools.count()

    def load(thread: int) -> None:
        nonlocal first_answered
        for n in range(REQUESTS):
            index = (thread + n) % 2
            size = 1 + next(counter) % 7
            ids = [f"t{thread}-r{n}-e{i}" for i in range(size)]
            path, body, headers = body_for(KINDS[(thread + n) % len(KINDS)], ids)
            try:
                connection = http.client.HTTPConnection("127.0.0.1", servers[index].port, timeout=20)
                connection.request("POST", path, body, headers)
                status = connection.getresponse().status
                connection.close()
            except OSError:
                with lock:
                    unanswered.append(ids)
                continue
            with lock:
                answers.append((index, status, ids))
                if index == 0:
                    first_answered += 1
                    if first_answered == KILL_AFTER:
                        first.process.send_signal(signal.SIGKILL)  # mid-load, requests in flight

    try:
        threads = [threading.Thread(target=load, args=(t,)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        for server in servers:
            server.stop()
    assert first.process.returncode == -signal.SIGKILL

    with psycopg.connect(postgres_server.url) as connection:
        rows = connection.execute(f"SELECT data->>'id', api, count(*) FROM {pg_table} GROUP BY 1, 2").fetchall()
    stored = {event_id: count for event_id, _, count in rows}
    acknowledged = [event_id for _, status, ids in answers if status == 202 for event_id in ids]
    assert acknowledged and set(acknowledged) <= set(stored)  # every acknowledged event is there
    assert all(count == 1 for count in stored.values())  # and nothing twice
    # A 429 (the shared limit), or a 503 of an overloaded machine (the storage
    # wait's bound: the hook never saw the batch), stored nothing.
    refused = [ids for _, status, ids in answers if status in (429, 503)]
    assert not set(stored) & {event_id for ids in refused for event_id in ids}
    assert {status for _, status, _ in answers} <= {202, 429, 503}
    # The limit held across both: each server alone got fewer requests than the limit.
    accepted = sum(1 for _, status, _ in answers if status == 202)
    assert accepted <= LIMIT < len(answers) + len(unanswered)
    assert any(status == 429 for _, status, _ in answers)
    assert {index for index, status, _ in answers if status == 202} == {0, 1}
    assert {api for _, api, _ in rows} == {"betterstack", "baselime"}
