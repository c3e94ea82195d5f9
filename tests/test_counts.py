"""An observer that counts with tallies of its own (ingest_mw.counts), no
Prometheus: what the flow adds for each request, through both adapters
under a mount prefix."""

from __future__ import annotations

import gzip
import threading

import orjson
from clients import PREFIX, make_client
from sinks_for_tests import FailingSink

from ingest_mw import BaselimeAPI, BetterStackAPI, MemorySink
from ingest_mw.counts import DURATION_BUCKETS, Tallies, Tally
from ingest_mw.observe import Observer

TOKEN = "s3cret-token"
KEY = "s3cret-key"
BETTERSTACK = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
BASELIME = {"x-api-key": KEY, "Content-Type": "application/json"}


class Totals(Observer):
    """Counts, and is told nothing."""

    def __init__(self) -> None:
        self.tallies = Tallies()


def events(count: int) -> bytes:
    return orjson.dumps([{"message": f"event {i}"} for i in range(count)])


def test_the_flow_counts_each_request_into_the_observers_tallies(adapter: str) -> None:
    observer = Totals()
    assert not (observer.tells_started or observer.tells_received or observer.tells_finished)
    client = make_client(adapter, [BetterStackAPI([TOKEN]), BaselimeAPI({"team": KEY})], MemorySink(), observer)
    plain, packed = events(2), gzip.compress(events(5))
    assert client.request("POST", f"{PREFIX}/", plain, BETTERSTACK).status == 202
    assert client.request("POST", f"{PREFIX}/", packed, {**BETTERSTACK, "Content-Encoding": "gzip"}).status == 202
    assert client.request("POST", f"{PREFIX}/", plain, {**BETTERSTACK, "Authorization": "Bearer no"}).status == 403
    partly = b'[{"a": 1}, 7, {"a": 2}]'
    assert client.request("POST", f"{PREFIX}/v1/web", partly, BASELIME).status == 400

    totals = observer.tallies.totals()
    betterstack, baselime = totals["betterstack"], totals["baselime"]
    assert betterstack.requests == {202: 2, 403: 1}
    assert betterstack.events_accepted == 7
    assert betterstack.wire_bytes == len(plain) + len(packed)
    assert betterstack.body_bytes == len(plain) + len(events(5))
    assert sum(betterstack.duration.counts) == 3
    assert sum(betterstack.storage.counts) == 2
    assert len(betterstack.storage.counts) == len(DURATION_BUCKETS) + 1
    assert betterstack.refused == {}
    assert baselime.requests == {400: 1}
    assert baselime.events_accepted == 2
    assert baselime.refused == {"not_an_object": 1}


def test_refusals_by_the_rate_limit_and_the_storage_are_counted(adapter: str) -> None:
    observer = Totals()
    client = make_client(adapter, BetterStackAPI([TOKEN], rate_limit="1/minute"), MemorySink(), observer)
    client.keep_loop()  # memory:// counts per event loop: the two requests share one
    statuses = [client.request("POST", f"{PREFIX}/", events(1), BETTERSTACK).status for _ in range(2)]
    client.close()
    assert statuses == [202, 429]
    failing = make_client(adapter, BetterStackAPI([TOKEN]), FailingSink(), observer)
    assert failing.request("POST", f"{PREFIX}/", events(4), BETTERSTACK).status == 500

    tally = observer.tallies.totals()["betterstack"]
    assert tally.requests == {202: 1, 429: 1, 500: 1}
    assert tally.rate_limited == 1
    assert tally.storage_errors == 1
    assert tally.refused == {"storage_error": 4}
    assert tally.events_accepted == 1
    assert sum(tally.storage.counts) == 2  # the failed store was timed too


def test_a_reading_while_another_thread_folds_the_ended_ones_counts_each_once(monkeypatch) -> None:
    # The interleaving a thread-per-request server meets: a reading lists the
    # tallies under the lock, a thread it listed as live ends, and a new
    # thread's first tally folds it into the ended ones while the reading is
    # still adding them up outside the lock. Forced here, with real threads.
    tallies = Tallies()
    finish = threading.Event()

    def count_in_a_thread(events: int, wait: threading.Event | None = None) -> threading.Thread:
        def work() -> None:
            tallies.here("betterstack").count(202, 0.0, 0, 0, events, 0.0)
            if wait is not None:
                wait.wait(timeout=10)

        thread = threading.Thread(target=work)
        thread.start()
        return thread

    count_in_a_thread(3).join(timeout=10)
    assert tallies.totals()["betterstack"].events_accepted == 3  # its thread ended: folded
    live = count_in_a_thread(5, finish)  # alive when the reading lists it
    add, forced = Tally.add, []

    def add_while_the_live_thread_ends_and_is_folded(self: Tally, other: Tally) -> None:
        if not forced and not tallies._lock.locked():  # the reading's sum, outside the lock
            forced.append(True)
            finish.set()
            live.join(timeout=10)
            count_in_a_thread(0).join(timeout=10)  # its first tally folds the ended one
        add(self, other)

    monkeypatch.setattr(Tally, "add", add_while_the_live_thread_ends_and_is_folded)
    readings = [tallies.totals()["betterstack"].events_accepted for _ in range(2)]
    assert forced and readings == [8, 8]
