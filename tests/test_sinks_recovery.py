"""The file sinks' start-up check, failures and recovery, and SQLite shared by several processes."""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clients import PREFIX, make_client

from ingest_mw import Batch, BetterStackAPI, Event, JSONLinesSink, JSONMemorySink, MemorySink, SQLiteSink
from ingest_mw.admission import Admission
from ingest_mw.sinks import SinkUnavailable, masked, sink_from_url
from ingest_mw.sinks.sqlite import BUSY_TIMEOUT

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HEADERS = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
ROOT = os.geteuid() == 0


def batch(*numbers: int) -> Batch:
    return Batch("betterstack", "s", T0, [Event(T0, {"n": n}) for n in numbers])


def stored(path: Path) -> list[int]:
    with sqlite3.connect(path) as db:
        return [json.loads(data)["n"] for (data,) in db.execute("SELECT data FROM events ORDER BY id")]


def test_every_built_in_sink_has_a_check(tmp_path):
    for sink in (MemorySink(), JSONMemorySink(), SQLiteSink(tmp_path / "a.db"), JSONLinesSink(tmp_path / "a.jsonl")):
        assert sink.check() is None
        sink.close()


def test_a_path_that_cannot_be_opened_is_said_at_once_in_one_line(tmp_path):
    missing = tmp_path / "no" / "such"
    for make, name in ((SQLiteSink, "SQLite sink"), (JSONLinesSink, "JSON Lines sink")):
        with pytest.raises(SinkUnavailable) as raised:
            make(missing / "events")
        assert str(raised.value).startswith(f"{name} {missing / 'events'}: ") and "\n" not in str(raised.value)


def test_sqlite_directory_deleted_then_back(adapter, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    directory = tmp_path / "data"
    directory.mkdir()
    sink = SQLiteSink(directory / "events.db")
    # An admission of its own: its refusal lines are its own too (one a minute).
    client = make_client(adapter, BetterStackAPI({"web": "tok"}, admission=Admission()), sink)
    post = lambda n: client.request("POST", PREFIX + "/", json.dumps({"n": n}).encode(), HEADERS).status  # noqa: E731
    assert post(1) == 202
    shutil.rmtree(directory)  # the open file lives on, unlinked: nothing may be acknowledged into it
    refused = client.request("POST", PREFIX + "/", json.dumps({"n": 2}).encode(), HEADERS)
    assert (refused.status, refused.headers.get("retry-after")) == (503, "1")  # to send again later
    assert post(3) == 503
    with pytest.raises(SinkUnavailable, match="unable to open database file"):
        sink.check()
    directory.mkdir()
    sink.check()
    assert [post(4), post(5)] == [202, 202]
    assert stored(directory / "events.db") == [4, 5]  # a new file: the old one was deleted with its directory
    mine = [record for record in caplog.records if record.name == "ingest_mw.sinks"]
    assert [r.levelname for r in mine] == ["ERROR", "WARNING"]  # one line when it failed, one when it stored again
    # No traceback, and one line for both refused batches (the admission's refusal lines, one a minute).
    assert [r.getMessage() for r in caplog.records if r.name == "ingest_mw"] == [
        f"ingest_mw: SQLite sink {directory / 'events.db'}: unable to open database file;"
        f" 1 betterstack events from source 'web' not acknowledged"
        " (1 such since the last line about it; the next in 60s at the earliest)"
    ]
    assert not any(record.exc_info for record in caplog.records)
    sink.close()


def _read_only(path: Path) -> tuple[object, object]:
    """How to make ``path`` unwritable and writable again: chmod, or for root
    (who writes read-only files) ``chattr +i``, when the file system takes it."""
    if not ROOT:
        return (lambda: path.chmod(0o444)), (lambda: path.chmod(0o644))
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("root writes read-only files, and chattr +i is not available here")
    subprocess.run([chattr, "-i", str(path)], check=True)
    return (
        lambda: subprocess.run([chattr, "+i", str(path)], check=True),
        lambda: subprocess.run([chattr, "-i", str(path)], check=True),
    )


def test_sqlite_made_read_only_then_writable(adapter, tmp_path, caplog):
    path = tmp_path / "events.db"
    sink = SQLiteSink(path)
    client = make_client(adapter, BetterStackAPI({"web": "tok"}), sink)
    post = lambda n: client.request("POST", PREFIX + "/", json.dumps({"n": n}).encode(), HEADERS).status  # noqa: E731
    assert post(1) == 202
    sink.close()  # the next batch reopens the file: read-only by then
    make_read_only, make_writable = _read_only(path)
    make_read_only()
    try:
        assert [post(2), post(3)] == [503, 503]
        with pytest.raises(SinkUnavailable, match="readonly|read-only|unable to open"):
            sink.check()
    finally:
        make_writable()
    sink.check()
    assert [post(4), post(5)] == [202, 202]
    assert stored(path) == [1, 4, 5]
    sink.close()


@pytest.fixture
def file_size_limit():
    """Sets RLIMIT_FSIZE (what a full disk looks like to a writer, root included) and restores it."""
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process

    def limit(size: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, old_limit[1]))

    try:
        yield limit
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_sqlite_disk_full_then_space_again(tmp_path, file_size_limit):
    path = tmp_path / "events.db"
    sink = SQLiteSink(path)
    sink(batch(1))
    wal = Path(f"{path}-wal")
    file_size_limit(max(path.stat().st_size, wal.stat().st_size) + 4096)
    with pytest.raises(SinkUnavailable):
        sink(batch(*range(100, 2100)))
    file_size_limit(resource.RLIM_INFINITY)
    sink(batch(2))
    assert stored(path) == [1, 2]  # the failed batch left nothing behind
    sink.close()


def test_jsonl_disk_full_leaves_no_partial_batch(tmp_path, file_size_limit):
    path = tmp_path / "events.jsonl"
    sink = JSONLinesSink(path)
    sink(batch(1))
    size = path.stat().st_size
    file_size_limit(size + 1000)
    with pytest.raises(SinkUnavailable, match="File too large"):
        sink(batch(*range(100, 200)))
    file_size_limit(resource.RLIM_INFINITY)
    assert path.stat().st_size == size  # cut back to where the batch began
    sink(batch(2))
    assert [json.loads(line)["data"]["n"] for line in path.read_text().splitlines()] == [1, 2]
    sink.close()


def test_jsonl_cut_back_spares_another_writers_lines(tmp_path, file_size_limit):
    # Two sinks on one file, as two serve workers have: the second appends
    # after the first last wrote, then the first's next batch fails halfway.
    path = tmp_path / "events.jsonl"
    first, second = JSONLinesSink(path), JSONLinesSink(path)
    first(batch(1))
    second(batch(2))
    file_size_limit(path.stat().st_size + 1000)
    with pytest.raises(SinkUnavailable, match="File too large"):
        first(batch(*range(100, 200)))
    file_size_limit(resource.RLIM_INFINITY)
    first(batch(3))
    second(batch(4))
    assert [json.loads(line)["data"]["n"] for line in path.read_text().splitlines()] == [1, 2, 3, 4]
    first.close()
    second.close()


def test_jsonl_writers_of_one_file_take_turns(tmp_path):
    # A group is appended under the file's lock: a writer that holds it (another
    # process's sink, here a second open file) holds the next group back until released.
    import fcntl
    import threading

    path = tmp_path / "events.jsonl"
    sink = JSONLinesSink(path)
    sink(batch(1))
    with open(path, "ab") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        writing = threading.Thread(target=sink, args=(batch(2),))
        writing.start()
        writing.join(0.3)
        assert writing.is_alive()  # waiting for the lock, nothing written yet
        assert [json.loads(line)["data"]["n"] for line in path.read_text().splitlines()] == [1]
        other.write(b'{"data": {"n": "other"}}\n')
        other.flush()
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)
    writing.join(10)
    assert [json.loads(line)["data"]["n"] for line in path.read_text().splitlines()] == [1, "other", 2]
    sink.close()


def test_jsonl_follows_a_rotated_file(tmp_path):
    path = tmp_path / "events.jsonl"
    sink = JSONLinesSink(path)
    sink(batch(1))
    path.rename(tmp_path / "events.jsonl.1")  # as logrotate does without copytruncate
    sink(batch(2))
    assert [json.loads(line)["data"]["n"] for line in path.read_text().splitlines()] == [2]
    sink.close()


WRITER = """
import sys
from datetime import UTC, datetime
from ingest_mw import Batch, Event, SQLiteSink
sink = SQLiteSink(sys.argv[1])
worker = int(sys.argv[2])
now = datetime.now(UTC)
for k in range(int(sys.argv[3])):
    sink(Batch("betterstack", f"w{worker}", now, [Event(now, {"n": worker * 100000 + k * 10 + i}) for i in range(10)]))
sink.close()
"""


def test_sqlite_shared_by_several_processes(tmp_path):
    """Four processes write one file at once (as ``serve --workers`` does): every
    batch lands, none fails for another's lock, none twice."""
    assert BUSY_TIMEOUT >= 1
    path = tmp_path / "shared.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), "60"], env=env, stderr=subprocess.PIPE)
        for w in range(4)
    ]
    errors = [writer.communicate(timeout=120)[1].decode() for writer in writers]
    assert [writer.returncode for writer in writers] == [0] * 4, errors
    numbers = stored(path)
    assert sorted(numbers) == sorted(w * 100000 + k * 10 + i for w in range(4) for k in range(60) for i in range(10))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_urls_never_show_a_password():
    assert masked("postgresql://user:s3cret@db:5432/logs?table=t") == "postgresql://user:***@db:5432/logs?table=t"
    assert masked("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert masked("postgresql://db/logs?user=u&password=s3cret") == "postgresql://db/logs?user=u&password=***"
    assert masked("sqlite:///events.db") == "sqlite:///events.db"
    # A libpq key=value conninfo, bare or quoted, and a password of any case.
    assert masked("host=db dbname=logs password=s3cret") == "host=db dbname=logs password=***"
    assert masked("host=db PASSWORD = 's3 cr\\'et' user=u") == "host=db PASSWORD = *** user=u"
    assert masked("host=db sslpassword=k3y") == "host=db sslpassword=***"
    assert masked("host=h password=abc\\ def user=u") == "host=h password=*** user=u"  # an escaped space
    assert masked("host=h password='a b") == "host=h password=***"  # a quote never closed
    assert masked("host=h password=s3cret application_name=http://app") == (
        "host=h password=*** application_name=http://app"  # "://" in a value does not make a URL
    )
    # A password holding "@", a password alone as the user information, a TLS key's password.
    assert masked("redis://:p@ss@host:6379/0") == "redis://:***@host:6379/0"
    assert masked("redis://s3cret@host") == "redis://***@host"
    assert masked("rediss://host?ssl_password=k3y&db=0") == "rediss://host?ssl_password=***&db=0"
    assert masked("redis://host:6379/0?stream=ingest_mw:events") == "redis://host:6379/0?stream=ingest_mw:events"
    # A quote inside a bare conninfo value is part of it (libpq); white space before
    # a URL, a scheme with "_", a password holding "/" unencoded.
    assert masked("password=ab'cd host=h") == "password=*** host=h"
    assert masked(" postgresql://user:s3cret@host/db") == " postgresql://user:***@host/db"
    assert masked("my_db://user:s3cret@host/db") == "my_db://user:***@host/db"
    assert masked("redis://:abc/def@host:6379/0") == "redis://:***@host:6379/0"
    assert masked("redis://:ab?c@host:6379/0") == "redis://:***@host:6379/0"  # "?" in the password
    assert masked("redis://:Zk8?q2==@h:6379/0") == "redis://:***@h:6379/0"  # ... with "=" after it
    assert masked("postgresql://u:p?x=1@h/db") == "postgresql://u:***@h/db"
    assert masked("redis://h/0?flag@x") == "redis://h/0?flag@x"  # a path first: the "@" is the query's
    # An "@" in the query is the query's: the host stays, a secret key's value does not.
    assert masked("postgresql://host/db?user=a@b&password=s3cret") == "postgresql://host/db?user=a@b&password=***"
    assert (
        masked("redis://h:6379/0?username=me@corp&password=s3cret") == "redis://h:6379/0?username=me@corp&password=***"
    )
    assert masked("https://h/v1?source=me@x.com") == "https://h/v1?source=me@x.com"
    with pytest.raises(ValueError) as raised:
        sink_from_url("mysql://user:s3cret@db/logs")
    assert "s3cret" not in str(raised.value) and "postgresql://" in str(raised.value)


def test_a_forked_process_opens_its_own_sqlite_connection(tmp_path):
    """A sink made before a pre-fork server forks its workers: each stores on a connection of its own."""
    path = tmp_path / "forked.db"
    sink = SQLiteSink(path)
    sink(batch(1))
    pid = os.fork()
    if pid == 0:  # the child: store, and say by the exit status whether it could
        try:
            sink(batch(2))
            sink.close()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sink(batch(3))
    assert sorted(stored(path)) == [1, 2, 3]
    sink.close()


def _checkpointed(path: Path) -> list[int]:
    """The events in the database file itself, ignoring its WAL (``immutable``):
    what a checkpoint has copied there."""
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return [n for (n,) in db.execute("SELECT json_extract(data, '$.n') FROM events ORDER BY id")]
    except sqlite3.OperationalError:  # not even the table is in the file yet
        return []
    finally:
        db.close()


def _eventually(check, seconds: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_the_sqlite_checkpointer_copies_the_wal_into_the_file_also_after_it_is_replaced(tmp_path):
    directory = tmp_path / "data"
    directory.mkdir()
    path = directory / "events.db"
    sink = SQLiteSink(path)
    client = make_client("wsgi", BetterStackAPI({"web": "tok"}), sink)
    post = lambda n: client.request("POST", PREFIX + "/", json.dumps({"n": n}).encode(), HEADERS).status  # noqa: E731
    assert [post(1), post(2)] == [202, 202]
    assert _eventually(lambda: _checkpointed(path) == [1, 2])  # in the file, not only in the WAL
    shutil.rmtree(directory)
    assert post(3) == 503
    directory.mkdir()
    sink.check()
    assert [post(4), post(5)] == [202, 202]
    # The checkpointer's connection was on the old file: it follows the new one.
    assert _eventually(lambda: path.exists() and _checkpointed(path) == [4, 5])
    sink.close()


def test_jsonl_a_forked_process_appends_under_a_lock_of_its_own(tmp_path):
    # A sink made before a fork (a pre-fork server): the child opens the file
    # anew, so that its lock keeps the parent's writes out, as another process's would.
    import fcntl

    path = tmp_path / "events.jsonl"
    sink = JSONLinesSink(path)
    sink(batch(1))
    ready_read, ready_write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: hold the sink's lock for a moment, then leave
        try:
            file = sink._usable()
            fcntl.flock(file.fileno(), fcntl.LOCK_EX)
            os.write(ready_write, b"x")
            time.sleep(0.5)
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_read, 1) == b"x"
        started = time.monotonic()
        sink(batch(2))  # waits for the child's lock
        waited = time.monotonic() - started
    finally:
        os.waitpid(child, 0)
        os.close(ready_read)
        os.close(ready_write)
    assert waited > 0.2
    assert [json.loads(line)["data"]["n"] for line in path.read_text().splitlines()] == [1, 2]
    sink.close()
