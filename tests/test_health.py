"""``/healthz`` and ``/readyz``: what a load balancer sees, through both adapters,
with real sinks and a real Redis made unavailable in the ways they fail."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import webtest
from clients import PREFIX, make_client
from sinks_for_tests import CheckedSQLiteSink
from starlette.applications import Starlette
from starlette.routing import Mount
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from ingest_mw import ASGIApp, BaselimeAPI, BetterStackAPI, JSONLinesSink, MemorySink, RateLimit, SQLiteSink, WSGIApp
from ingest_mw.endpoints import EndpointsASGIMiddleware, EndpointsWSGIMiddleware
from ingest_mw.health import Health, Readiness, health_asgi_endpoints, health_wsgi_endpoints
from ingest_mw.read import Query, reader_for
from ingest_mw.sinks import SinkUnavailable

TOKEN = "s3cret-token"
BETTERSTACK = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def probed_client(adapter: str) -> Iterator[Callable[..., Any]]:
    """Makes a host app of ``adapter`` with the ingest API under /ingest and the probes in front."""
    made: list[Any] = []

    def make(health: Health, apis: Any = None, sink: Any = None) -> Any:
        endpoints = health_wsgi_endpoints(health) if adapter == "wsgi" else health_asgi_endpoints(health)
        client = make_client(adapter, apis or BetterStackAPI([TOKEN]), sink or MemorySink(), None, endpoints)
        client.keep_loop()  # a server's one loop: the async storage clients are opened once
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_both_probes_answer_ok_beside_the_ingest_api(probed_client: Any) -> None:
    client = probed_client(Health())
    for path in ("/healthz", "/readyz"):
        reply = client.request("GET", path)
        assert (reply.status, reply.body) == (200, b"ok\n")
        assert reply.headers["content-type"] == "text/plain; charset=utf-8"
        assert reply.headers["cache-control"] == "no-store"
        head = client.request("HEAD", path)
        assert (head.status, head.body) == (200, b"")
        assert client.request("POST", path).status == 405
    assert client.request("POST", f"{PREFIX}/", b'{"m": 1}', BETTERSTACK).status == 202
    assert client.request("GET", "/healthz/more").body == b"host app"  # exact paths only


@pytest.mark.parametrize("form", ["wrapper", "endpoints="])
def test_probes_are_never_shadowed_by_an_ingest_route_asgi(form: str) -> None:
    # The probes are answered before any API is asked; other paths are the API's (Baselime alone: its 400).
    endpoints = health_asgi_endpoints(Health())
    if form == "wrapper":
        app: Any = EndpointsASGIMiddleware(ASGIApp(BaselimeAPI(["k"]), sink=MemorySink()), endpoints)
    else:
        app = ASGIApp(BaselimeAPI(["k"]), sink=MemorySink(), endpoints=endpoints)
    host = Starlette(routes=[Mount("/svc", app=app)])

    async def request(method: str, path: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url="http://t") as client:
            return await client.request(method, path)

    ready = asyncio.run(request("GET", "/svc/readyz"))
    assert (ready.status_code, ready.text) == (200, "ok\n")
    assert asyncio.run(request("GET", "/svc/healthz")).status_code == 200
    for path in ("/svc/web/v2", "/svc/readyz/x"):
        missed = asyncio.run(request("POST", path))
        assert (missed.status_code, missed.json()["detail"]) == (
            400,
            "no /v1/<dataset> in the path: send to /v1/<dataset>, the dataset to store in",
        )


@pytest.mark.parametrize("form", ["wrapper", "endpoints="])
def test_probes_are_never_shadowed_by_an_ingest_route_wsgi(form: str) -> None:
    endpoints = health_wsgi_endpoints(Health())
    if form == "wrapper":
        app: Any = EndpointsWSGIMiddleware(WSGIApp(BaselimeAPI(["k"]), sink=MemorySink()), endpoints)
    else:
        app = WSGIApp(BaselimeAPI(["k"]), sink=MemorySink(), endpoints=endpoints)
    host = webtest.TestApp(DispatcherMiddleware(lambda e, s: [], {"/svc": app}))
    assert host.get("/svc/readyz").text == "ok\n"
    assert host.get("/svc/healthz").status_int == 200
    assert host.post("/svc/web/v2", status=400).json["detail"].startswith("no /v1/<dataset> in the path")


def test_draining_fails_readiness_not_liveness(probed_client: Any) -> None:
    health = Health()
    client = probed_client(health)
    health.drain()
    reply = client.request("GET", "/readyz")
    assert (reply.status, reply.body) == (503, b"not ready: draining\n")
    assert client.request("GET", "/healthz").status == 200


def test_a_rate_limit_storage_that_is_down_fails_readiness(probed_client: Any, redis_server: Any) -> None:
    rate_limit = RateLimit(limit="100/minute", storage_uri=redis_server.url)
    api = BetterStackAPI([TOKEN], rate_limit=rate_limit)
    client = probed_client(Health(rate_limits=[api.rate_limit], timeout=3), api)
    assert client.request("GET", "/readyz").status == 200
    redis_server.stop()
    reply = client.request("GET", "/readyz")
    assert (reply.status, reply.body) == (503, b"not ready: rate-limit storage unavailable\n")
    assert redis_server.url.encode() not in reply.body
    redis_server.start()
    assert client.request("GET", "/readyz").status == 200


def test_a_frozen_rate_limit_storage_makes_the_probe_answer_503_in_time(probed_client: Any, redis_server: Any) -> None:
    rate_limit = RateLimit(limit="100/minute", storage_uri=redis_server.url)
    health = Health(rate_limits=[rate_limit], timeout=3)
    client = probed_client(health, BetterStackAPI([TOKEN], rate_limit=rate_limit))
    assert client.request("GET", "/readyz").status == 200  # the storage's client connected
    health.timeout = 0.3
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        for _ in range(3):  # probes while frozen do not pile up, and each answers in time
            started = time.monotonic()
            reply = client.request("GET", "/readyz")
            assert time.monotonic() - started < 2.0
            # Within the probe's timeout, or first the storage's own bounded call
            # (RateLimit's storage_timeout) gives up: 503 either way, in time.
            assert reply.status == 503
            assert reply.body in (
                b"not ready: rate-limit storage did not answer in time\n",
                b"not ready: rate-limit storage unavailable\n",
            )
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 10
    while client.request("GET", "/readyz").status != 200:
        assert time.monotonic() < deadline, "not ready again after the storage thawed"
        time.sleep(0.05)


SQLITE_SINKS = [
    CheckedSQLiteSink,
    pytest.param(
        SQLiteSink,
        marks=pytest.mark.skipif(
            not hasattr(SQLiteSink, "check"), reason="SQLiteSink.check() comes with the sinks work"
        ),
    ),
]


@pytest.mark.parametrize("sink_class", SQLITE_SINKS)
def test_a_sink_locked_by_another_process_fails_readiness_until_released(
    probed_client: Any, tmp_path: Path, sink_class: type[SQLiteSink]
) -> None:
    sink = sink_class(tmp_path / "events.db")
    client = probed_client(Health(sinks=[sink], timeout=0.3), sink=sink)
    assert client.request("GET", "/readyz").status == 200
    other = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        reply = client.request("GET", "/readyz")
        assert reply.status == 503
        name = sink_class.__name__
        # Within the probe's 0.3 s, or sooner if the sink's own check gives up first.
        assert reply.body in (
            f"not ready: sink {name} did not answer in time\n".encode(),
            f"not ready: sink {name} unavailable\n".encode(),
        )
        assert str(tmp_path).encode() not in reply.body
    finally:
        other.execute("ROLLBACK")
        other.close()
    deadline = time.monotonic() + 10
    while client.request("GET", "/readyz").status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sink.close()


# Run in a process the directory's permissions apply to; it prints the answer
# of /readyz before, while and after the directory and its files are read-only.
READ_ONLY = """
import os, sys, wsgiref.util
from sinks_for_tests import CheckedSQLiteSink
from starlette.applications import Starlette
from starlette.routing import Mount
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from ingest_mw.health import Health, health_wsgi_endpoints

directory = sys.argv[1]
sink = CheckedSQLiteSink(os.path.join(directory, "events.db"))
ready = health_wsgi_endpoints(Health(sinks=[sink]))["/readyz"]

def probe():
    environ = {}
    wsgiref.util.setup_testing_defaults(environ)
    statuses = []
    body = b"".join(ready(environ, lambda status, headers: statuses.append(status)))
    return statuses[0] + " " + body.decode().strip()

print(probe())
for name in os.listdir(directory):
    os.chmod(os.path.join(directory, name), 0o444)
os.chmod(directory, 0o555)
print(probe())
os.chmod(directory, 0o755)
for name in os.listdir(directory):
    os.chmod(os.path.join(directory, name), 0o644)
print(probe())
"""


_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _without_dac_override() -> None:
    """In the child, before exec: root loses the capability to write through permissions."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_a_sink_in_a_directory_made_read_only_fails_readiness_until_writable_again(tmp_path: Path) -> None:
    directory = tmp_path / "db"
    directory.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    try:
        done = subprocess.run(
            [sys.executable, "-c", READ_ONLY, str(directory)],
            env=env,
            # root writes through any permission unless it loses CAP_DAC_OVERRIDE
            preexec_fn=_without_dac_override if os.geteuid() == 0 else None,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.SubprocessError as exc:  # prctl refused: a container without CAP_SETPCAP
        pytest.skip(f"cannot run a child without CAP_DAC_OVERRIDE as root here: {exc}")
    try:
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "200 OK ok",
            "503 Service Unavailable not ready: sink CheckedSQLiteSink unavailable",
            "200 OK ok",
        ]
    finally:
        directory.chmod(0o755)


def test_a_sink_without_a_check_is_taken_as_writable() -> None:
    assert Health(sinks=[MemorySink()]).check() == (True, ())


def test_config_mistakes_say_what_to_fix() -> None:
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        Health(timeout=0)
    with pytest.raises(ValueError, match="give an exact path such as '/healthz'"):
        EndpointsWSGIMiddleware(lambda e, s: [], {"healthz": lambda e, s: []})


def test_a_check_that_fails_after_its_probe_gave_up_leaves_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    # An async check slower than the probe's timeout, which then fails: nobody
    # waits for it any more, and asyncio would log "Task exception was never
    # retrieved" with a traceback when it is dropped.
    class SlowFailingSink:
        def __call__(self, batch: object) -> None:
            pass

        async def acheck(self) -> None:
            await asyncio.sleep(0.1)
            raise SinkUnavailable("a sink: connection refused")

    health = Health(sinks=[SlowFailingSink()], timeout=0.02)

    async def probes() -> list[Readiness]:
        first = await health.acheck()  # gives up before the check ends
        await asyncio.sleep(0.2)  # the check fails meanwhile, unawaited
        second = await health.acheck()  # reads that failure, starts it again
        await asyncio.sleep(0.2)
        return [first, second]

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        first, second = asyncio.run(probes())
        gc.collect()
    assert not first.ready and not second.ready
    assert "never retrieved" not in caplog.text


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
def test_a_file_sink_short_of_disk_space_fails_readiness_and_still_stores(
    probed_client: Any, tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The disk's real free space, asked for more than it has: not ready, while
    # writes (which are never refused for it) still go through.
    free = shutil.disk_usage(tmp_path).free
    make = {"sqlite": SQLiteSink, "jsonl": JSONLinesSink}[kind]
    cramped = make(tmp_path / f"cramped.{kind}", min_free_bytes=free + 2**40)
    roomy = make(tmp_path / f"roomy.{kind}", min_free_bytes=1)
    unasked = make(tmp_path / f"unasked.{kind}", min_free_bytes=0)
    with pytest.raises(SinkUnavailable, match=r"MiB free on its disk, under min_free_bytes"):
        cramped.check()
    client = probed_client(Health(sinks=[cramped]), sink=cramped)
    with caplog.at_level(logging.WARNING, "ingest_mw.health"):
        reply = client.request("GET", "/readyz")
    assert (reply.status, reply.body) == (503, f"not ready: sink {make.__name__} unavailable\n".encode())
    # The log line says why; the answer, which anyone may read, does not.
    what = {"sqlite": "SQLite sink", "jsonl": "JSON Lines sink"}[kind]
    said = f"not ready: sink {make.__name__} unavailable ({what} {tmp_path / f'cramped.{kind}'}: "
    assert said in caplog.text
    assert "MiB free on its disk, under min_free_bytes" in caplog.text
    assert client.request("POST", f"{PREFIX}/", b'{"message": "still stored"}', BETTERSTACK).status == 202
    assert [event.data["message"] for event in reader_for(cramped).after(0, Query())] == ["still stored"]
    for sink in (roomy, unasked):
        assert probed_client(Health(sinks=[sink]), sink=sink).request("GET", "/readyz").status == 200
    for sink in (cramped, roomy, unasked):
        sink.close()


def test_min_free_bytes_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"min_free_bytes = -1: give a whole number, 0 or more"):
        SQLiteSink(tmp_path / "events.db", min_free_bytes=-1)
    with pytest.raises(ValueError, match=r"min_free_bytes = '64M': give a whole number, 0 or more"):
        JSONLinesSink(tmp_path / "events.jsonl", min_free_bytes="64M")  # type: ignore[arg-type]


def test_the_disk_asked_is_the_one_the_file_is_on_not_the_one_of_its_link(tmp_path: Path) -> None:
    # A file sink's path may be a symbolic link to a file on another disk: the
    # room that matters is the file's. /dev/shm (a tmpfs) is that other disk.
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no writable /dev/shm on a disk of its own here")
    here, there = shutil.disk_usage(tmp_path).free, shutil.disk_usage(shm).free
    if abs(here - there) < 2**26:
        pytest.skip("the two disks have about as much room: the test could not tell them apart")
    between = (here + there) // 2
    real_directory = Path(tempfile.mkdtemp(dir=shm))
    try:
        for name, make in (("events.db", SQLiteSink), ("events.jsonl", JSONLinesSink)):
            make(real_directory / name).close()
            (tmp_path / name).symlink_to(real_directory / name)
            sink = make(tmp_path / name, min_free_bytes=between)
            if there < between:  # the file's disk is the smaller one
                with pytest.raises(SinkUnavailable, match="free on its disk, under min_free_bytes"):
                    sink.check()
            else:
                sink.check()
            sink.close()
    finally:
        shutil.rmtree(real_directory)
