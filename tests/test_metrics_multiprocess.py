"""Multiprocess mode: two processes count into one ``PROMETHEUS_MULTIPROC_DIR``, and a
scrape from either (or from a third) shows the sum, as under ``serve --workers 2``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from ingest_mw.metrics import (
    MULTIPROC_DIR_ENV,
    PrometheusObserver,
    forget_process,
    prepare_multiprocess,
    render_metrics,
)

ROOT = Path(__file__).resolve().parent.parent

# One worker: the ingest APIs under /ingest in a WSGI host, the metrics at
# /metrics in front; it sends its requests, then prints what /metrics shows.
WORKER = """
import os, sys
import orjson, webtest
from prometheus_client.parser import text_string_to_metric_families
from ingest_mw import BetterStackAPI, MemorySink, WSGIMiddleware
from ingest_mw.endpoints import EndpointsWSGIMiddleware
from ingest_mw.metrics import PrometheusObserver, metrics_wsgi_app

def host(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"host"]

requests, per_request = int(sys.argv[1]), int(sys.argv[2])
ingest = WSGIMiddleware(host, BetterStackAPI(["tok"], rate_limit=None), sink=MemorySink(),
                        prefix="/ingest", observer=PrometheusObserver())
app = webtest.TestApp(EndpointsWSGIMiddleware(ingest, {"/metrics": metrics_wsgi_app()}))
body = orjson.dumps([{"message": "m"}] * per_request)
for _ in range(requests):
    app.post("/ingest/", body, headers={"Authorization": "Bearer tok", "Content-Type": "application/json"}, status=202)
text = app.get("/metrics").text
families = text_string_to_metric_families(text)
values = {s.name + repr(sorted(s.labels.items())): s.value for f in families for s in f.samples}
values["pid"] = os.getpid()
print(orjson.dumps(values).decode())
"""

ACCEPTED = "ingest_mw_events_accepted_total[('api', 'betterstack')]"
ANSWERED = "ingest_mw_requests_total[('api', 'betterstack'), ('status', '202')]"
IN_FLIGHT = "ingest_mw_requests_in_flight[]"


def run_worker(directory: Path, requests: int, per_request: int) -> dict[str, float]:
    env = {**os.environ, MULTIPROC_DIR_ENV: str(directory), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(requests), str(per_request)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)  # type: ignore[no-any-return]


def test_two_processes_sum_in_one_directory(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    first = run_worker(tmp_path, 3, 2)
    assert (first[ACCEPTED], first[ANSWERED]) == (6, 3)
    second = run_worker(tmp_path, 4, 5)  # its /metrics sums both processes' files
    assert (second[ACCEPTED], second[ANSWERED]) == (6 + 20, 3 + 4)
    assert second[IN_FLIGHT] == 0
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # one file per process

    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))  # a third process scraping the same directory
    body = render_metrics().body.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    assert samples[("ingest_mw_events_accepted_total", (("api", "betterstack"),))] == 26
    assert samples[("ingest_mw_storage_duration_seconds_count", (("api", "betterstack"),))] == 7


def test_prepare_empties_the_directory_and_a_reaped_worker_is_forgotten(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))
    run_worker(tmp_path, 2, 1)  # an earlier run's files
    (tmp_path / "keep.txt").write_text("not prometheus-client's")
    assert prepare_multiprocess() == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]

    worker = run_worker(tmp_path, 1, 3)
    assert worker[ACCEPTED] == 3  # nothing left of the earlier run
    pid = int(worker["pid"])
    assert (tmp_path / f"gauge_livesum_{pid}.db").exists()
    forget_process(pid)
    assert not (tmp_path / f"gauge_livesum_{pid}.db").exists()
    assert (tmp_path / f"counter_{pid}.db").exists()  # its counts stay


def test_prepare_without_a_directory_makes_one(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(MULTIPROC_DIR_ENV, raising=False)
    path = prepare_multiprocess()
    try:
        assert os.environ[MULTIPROC_DIR_ENV] == path and Path(path).is_dir()
    finally:
        # Not monkeypatch.delenv: its undo would set the variable back to the
        # removed directory for every later test (and the servers they start).
        os.environ.pop(MULTIPROC_DIR_ENV, None)
        os.rmdir(path)


# A parent that counted before forking a worker (gunicorn --preload, say): the
# worker's counts are its own, the parent's are written once, by the parent.
FORKING = """
import os, sys
import orjson, webtest
from ingest_mw import BetterStackAPI, MemorySink, WSGIApp
from ingest_mw.metrics import PrometheusObserver, render_metrics

api = BetterStackAPI(["tok"], rate_limit=None)
app = webtest.TestApp(WSGIApp(api, sink=MemorySink(), observer=PrometheusObserver()))
headers = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
post = lambda: app.post("/", b'[{"m": 1}, {"m": 2}]', headers=headers)
post()  # the parent: 2 events
child = os.fork()
if child == 0:
    post(); post()  # the child: 4 events
    render_metrics()  # its own counts written now
    os._exit(0)
os.waitpid(child, 0)
"""


def test_a_forked_worker_does_not_count_its_parents_events_again(tmp_path: Path) -> None:
    env = {**os.environ, MULTIPROC_DIR_ENV: str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", FORKING], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(render_metrics_in(tmp_path))
        for s in family.samples
    }
    assert samples[("ingest_mw_events_accepted_total", (("api", "betterstack"),))] == 6


def render_metrics_in(directory: Path) -> str:
    previous = os.environ.get(MULTIPROC_DIR_ENV)
    os.environ[MULTIPROC_DIR_ENV] = str(directory)
    try:
        return render_metrics().body.decode()
    finally:
        if previous is None:
            del os.environ[MULTIPROC_DIR_ENV]
        else:
            os.environ[MULTIPROC_DIR_ENV] = previous


def test_a_directory_set_after_prometheus_client_was_imported_is_told(tmp_path: Path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    # This test process imported prometheus_client long ago, without the variable:
    # its values are single-process, so the observer would count where /metrics never reads.
    monkeypatch.setenv(MULTIPROC_DIR_ENV, str(tmp_path))
    with caplog.at_level(logging.WARNING, "ingest_mw"):
        PrometheusObserver()
    assert "PROMETHEUS_MULTIPROC_DIR is set, but prometheus_client was imported before it was" in caplog.text
    assert "set PROMETHEUS_MULTIPROC_DIR before anything imports prometheus_client" in caplog.text
