"""What the SQLite text index costs ingestion: none of it is in the sink's transaction.

Three ways to keep an FTS5 trigram index over ``events.data``, measured on
the real :class:`~ingest_mw.sinks.SQLiteSink` with batches of typical events:

* ``no index``: the sink alone (what ``serve`` does while nobody searches);
* ``trigger``: an ``AFTER INSERT`` trigger filling the index inside every
  ingest transaction (the choice not taken);
* ``lazy``: the sink while the page's reader, in a thread beside it, indexes
  the rows after the last one it indexed (``SQLiteReader.index``, as a text
  search does), in short transactions of its own: once a second (someone
  searching now and then), and nonstop (the worst case).

It also prints how long the reader holds the write lock per chunk (what a
sink's commit may wait at most) and its indexing rate. Run from the
repository root::

    python3 bench/fts_index.py            # about 30 s
    python3 bench/fts_index.py --batches 400
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

# Off the path: this folder (bench/http.py shadows the standard library's
# package); on it: the checkout this script belongs to.
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent), *(p for p in sys.path if Path(p or ".").resolve() != HERE)]

from ingest_mw.batch import Batch, Events
from ingest_mw.read.sqlite import INDEX_CHUNK, SQLiteReader
from ingest_mw.sinks import SQLiteSink
from ingest_mw.timestamps import EventTimes

_TRIGGER = """
CREATE VIRTUAL TABLE events_fts USING fts5(data, content='events', content_rowid='id', tokenize='trigram');
CREATE TRIGGER events_fts_insert AFTER INSERT ON events BEGIN
    INSERT INTO events_fts (rowid, data) VALUES (new.id, new.data);
END;
"""


def batches(count: int, size: int) -> list[Batch]:
    now = datetime.now(UTC)
    rule = EventTimes()
    made = []
    for index in range(count):
        events = [
            {
                "dt": now.isoformat(),
                "level": "info",
                "message": f"GET /api/orders/{index * size + n} 200 in {n % 97} ms",
                "request_id": f"req-{index:06d}-{n:04d}",
                "context": {"runtime": {"file": "app/orders.py", "line": 42}, "host": "web-3"},
            }
            for n in range(size)
        ]
        made.append(Batch("betterstack", "web", now, Events(events, rule, now)))
    return made


def ingest(sink: SQLiteSink, work: list[Batch]) -> float:
    started = time.perf_counter()
    for batch in work:
        sink(batch)
    return sum(len(b.events) for b in work) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=600)
    parser.add_argument("--size", type=int, default=100, help="events per batch")
    args = parser.parse_args()
    work = batches(args.batches, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        plain = SQLiteSink(Path(tmp) / "plain.db")
        rate_plain = ingest(plain, work)

        triggered = SQLiteSink(Path(tmp) / "trigger.db")
        triggered._db.executescript(_TRIGGER)
        rate_trigger = ingest(triggered, work)

        lazy_rates = {}
        indexed: dict[str, int] = {}
        holds: list[float] = []
        for label, pause in [("lazy, a search every second", 1.0), ("lazy, searching nonstop", 0.0)]:
            lazy_path = Path(tmp) / f"lazy-{pause}.db"
            lazy = SQLiteSink(lazy_path)
            reader = SQLiteReader(lazy_path, index=True)
            done = threading.Event()

            def search_now_and_then(
                reader: SQLiteReader = reader, done: threading.Event = done, pause: float = pause
            ) -> None:
                while not done.wait(pause):
                    while True:  # one search: index what is new, a chunk per transaction, within the budget
                        started = time.perf_counter()
                        before = reader.indexed_up_to()
                        if reader.index(budget=0) == before:
                            break
                        holds.append(time.perf_counter() - started)
                        if done.is_set():
                            break

            indexer = threading.Thread(target=search_now_and_then)
            indexer.start()
            lazy_rates[label] = ingest(lazy, work)
            done.set()
            indexer.join()
            indexed[label] = reader.indexed_up_to()

        fresh = SQLiteSink(Path(tmp) / "fresh.db")
        ingest(fresh, work)
        fresh_reader = SQLiteReader(fresh.path, index=True)
        started = time.perf_counter()
        fresh_reader.index(budget=600)
        index_rate = fresh_reader.cursor() / (time.perf_counter() - started)

    events = args.batches * args.size
    print(f"{events} events in batches of {args.size}")
    print(f"{'sink':28} {'events/s':>10} {'vs no index':>12}  indexed meanwhile")
    for name, rate in [("no index", rate_plain), ("trigger", rate_trigger), *lazy_rates.items()]:
        done_rows = {"no index": 0, "trigger": events}.get(name, indexed.get(name, 0))
        print(f"{name:28} {rate:10.0f} {rate / rate_plain:12.2f}  {done_rows}")
    holds.sort()
    if holds:
        print(
            f"index chunks of {INDEX_CHUNK} rows while ingesting: {len(holds)}, each (lock wait included) median"
            f" {holds[len(holds) // 2] * 1000:.1f} ms, max {holds[-1] * 1000:.1f} ms"
        )
    print(f"indexing a full table from scratch: {index_rate:.0f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
