"""Prometheus metrics of the ingest APIs: an observer that counts, and a ``/metrics`` app.

Needs the ``metrics`` extra (``pip install 'ingest-mw[metrics]'``, which is
:pypi:`prometheus-client`). Wiring, for a host or for ``serve``::

    from ingest_mw.metrics import PrometheusObserver, metrics_asgi_app

    observer = PrometheusObserver()           # metrics in prometheus_client's default registry
    ingest = ASGIApp(apis, sink=sink, observer=observer)
    app = EndpointsASGIMiddleware(ingest, {"/metrics": metrics_asgi_app()})

(:class:`~ingest_mw.endpoints.EndpointsASGIMiddleware` answers those exact
paths and passes every other request on; ``metrics_wsgi_app`` and
:class:`~ingest_mw.endpoints.EndpointsWSGIMiddleware` are the WSGI twins.)
A host that already exposes ``prometheus_client``'s default registry (its
own ``/metrics``, ``django-prometheus``, ``prometheus-flask-exporter``) needs
only the observer: the ``ingest_mw_*`` metrics appear there.

Several processes (``serve --workers N``, gunicorn, uvicorn ``--workers``):
set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory in the environment of
the process that starts the workers, before any of them imports
``prometheus_client``, as prometheus-client documents
(:func:`prepare_multiprocess` does it, in the supervisor before it starts the
workers). Every worker then writes its values to files there and whichever
worker answers ``/metrics`` sums them all. When a worker exits, the
supervisor calls :func:`forget_process` (prometheus-client's
``mark_process_dead``), so the in-flight gauges (``livesum``) forget it.

Every counter and histogram has the label ``api`` (``betterstack``,
``baselime``, ``otlp``); the in-flight gauges are read from the APIs'
:class:`~ingest_mw.admission.Admission`, shared by all of them, when
scraped. See ``docs/observability.md`` for the list. The observer counts
(:mod:`ingest_mw.counts`): the flow adds a request's facts to plain numbers
that only its own thread writes (no lock, no label lookup, no hook called);
the metric families are built from them when scraped, or, in multiprocess
mode, written to the directory every :data:`FLUSH_SECONDS` (and at each
scrape and at exit).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from asgiref.sync import sync_to_async
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .admission import Admission
from .api import IngestAPI, Response
from .asgi import send_response
from .counts import DURATION_BUCKETS, Durations, Tallies, Tally
from .health import METRICS_PATH
from .http import for_method, read_only_refusal
from .observe import Observer
from .wsgi import write_response

__all__ = [
    "DURATION_BUCKETS",
    "FLUSH_SECONDS",
    "METRICS_PATH",
    "MULTIPROC_DIR_ENV",
    "PrometheusObserver",
    "metrics_asgi_app",
    "metrics_wsgi_app",
    "forget_process",
    "prepare_multiprocess",
    "refusal_totals",
    "render_metrics",
]

logger = logging.getLogger("ingest_mw")

#: The environment variable that puts prometheus-client in multiprocess mode.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Every counted metric once: its name (a counter's without ``_total``, which
#: prometheus-client adds), kind, help, its label beside ``api``, and the
#: attribute of :class:`~ingest_mw.counts.Tally` that holds it.
_FAMILIES: tuple[tuple[str, str, str, str | None, str], ...] = (
    ("ingest_mw_requests", "counter", "Requests answered, by API and status.", "status", "requests"),
    ("ingest_mw_events_accepted", "counter", "Events stored and acknowledged.", None, "events_accepted"),
    (
        "ingest_mw_events_refused",
        "counter",
        "Events refused while their request was served, by reason (not those of requests refused whole).",
        "reason",
        "refused",
    ),
    ("ingest_mw_request_body_bytes", "counter", "Request body bytes read, as sent on the wire.", None, "wire_bytes"),
    (
        "ingest_mw_request_body_decoded_bytes",
        "counter",
        "Request body bytes read, after Content-Encoding is undone.",
        None,
        "body_bytes",
    ),
    ("ingest_mw_storage_duration_seconds", "histogram", "Time in the storage hook, per batch.", None, "storage"),
    ("ingest_mw_request_duration_seconds", "histogram", "Time to decide a request's answer.", None, "duration"),
    ("ingest_mw_rate_limited", "counter", "Requests refused by the rate limit.", None, "rate_limited"),
    ("ingest_mw_storage_errors", "counter", "Batches the storage hook failed to store.", None, "storage_errors"),
    (
        "ingest_mw_rate_limit_storage_errors",
        "counter",
        "Requests whose rate-limit storage could not be reached.",
        None,
        "rate_limit_storage_errors",
    ),
)

#: What is in flight, read from the admission (:mod:`ingest_mw.admission`)
#: when scraped: it counts every request of the APIs that share it, so these
#: gauges have no ``api`` label. Name, help, and how to read it.
_ADMISSION_GAUGES: tuple[tuple[str, str, Callable[[Admission], int]], ...] = (
    ("ingest_mw_requests_in_flight", "Requests being served (max_requests).", lambda a: a.requests.in_use),
    (
        "ingest_mw_request_body_bytes_in_flight",
        "Body bytes held against max_body_bytes_in_flight (what bodies hold past their first 64 KiB).",
        lambda a: a.body_bytes.used,
    ),
    (
        "ingest_mw_batches_in_storage",
        "Batches inside the storage hook (max_concurrent_stores).",
        lambda a: a.stores.in_use,
    ),
    (
        "ingest_mw_batches_waiting_for_storage",
        "Batches waiting for a place in the storage hook (max_storage_waiting).",
        lambda a: a.storage_waiting.in_use,
    ),
)

_BOUNDS = DURATION_BUCKETS
_BUCKET_LABELS = [*(floatToGoString(b) for b in _BOUNDS), "+Inf"]  # type: ignore[no-untyped-call]


def _in_flight(tallies: Tallies) -> list[tuple[str, str, int]]:
    """Each admission gauge: name, help, value (summed over the admissions ``tallies`` watch)."""
    return [(name, doc, sum(map(read, tallies.admissions))) for name, doc, read in _ADMISSION_GAUGES]


class _Collector(Collector):
    """The tallies as Prometheus metric families, read at each scrape (one process)."""

    def __init__(self, tallies: Tallies) -> None:
        self.tallies = tallies

    def describe(self) -> list[Metric]:
        families = [self._family(name, kind, doc, label) for name, kind, doc, label, _ in _FAMILIES]
        return families + [GaugeMetricFamily(name, doc) for name, doc, _ in _ADMISSION_GAUGES]

    @staticmethod
    def _family(name: str, kind: str, doc: str, label: str | None) -> Metric:
        labels = ["api"] if label is None else ["api", label]
        if kind == "counter":
            return CounterMetricFamily(name, doc, labels=labels)
        return HistogramMetricFamily(name, doc, labels=labels)

    def collect(self) -> list[Metric]:
        totals = self.tallies.totals()
        families = []
        for name, kind, doc, label, attribute in _FAMILIES:
            family = self._family(name, kind, doc, label)
            for api, tally in totals.items():
                value = getattr(tally, attribute)
                if isinstance(value, dict):
                    for key, count in sorted(value.items()):
                        family.add_metric([api, str(key)], count)  # type: ignore[attr-defined]
                elif isinstance(value, Durations):
                    cumulative = list(itertools.accumulate(value.counts))
                    buckets = list(zip(_BUCKET_LABELS, cumulative))
                    family.add_metric([api], buckets, value.sum)  # type: ignore[attr-defined]
                else:
                    family.add_metric([api], value)  # type: ignore[attr-defined]
            families.append(family)
        families += [GaugeMetricFamily(name, doc, value=value) for name, doc, value in _in_flight(self.tallies)]
        return families


class _Flusher:
    """Multiprocess mode: the tallies' growth written to prometheus-client's
    per-process files (``PROMETHEUS_MULTIPROC_DIR``), every :data:`FLUSH_SECONDS`
    from a daemon thread, at each scrape this process answers and at exit.
    A process killed outright loses at most that last interval's counts."""

    def __init__(self, tallies: Tallies) -> None:
        self.tallies = tallies
        self._lock = threading.Lock()
        self._flushed: dict[str, Tally] = {}
        self._metrics: dict[str, Any] = {}
        for name, kind, doc, label, attribute in _FAMILIES:
            labels = ["api"] if label is None else ["api", label]
            if kind == "counter":
                self._metrics[attribute] = Counter(name, doc, labels, registry=None)
            else:
                self._metrics[attribute] = Histogram(name, doc, labels, registry=None, buckets=_BOUNDS)
        # livesum: the processes' values added up, those of exited ones left out.
        self._gauges = {
            name: Gauge(name, doc, registry=None, multiprocess_mode="livesum") for name, doc, _ in _ADMISSION_GAUGES
        }
        self._pid: int | None = None
        atexit.register(self.flush)
        os.register_at_fork(after_in_child=self._forked)

    def ensure_running(self) -> None:
        """Start the flushing thread in this process."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            threading.Thread(target=self._run, name="ingest_mw-metrics-flush", daemon=True).start()

    def _forked(self) -> None:
        """In a forked child: the counts it inherited are the parent's to write,
        so only what this process counts from now on is flushed, by a thread of
        its own (the parent's did not survive the fork)."""
        self._lock = threading.Lock()
        self.tallies.forked()
        self._flushed = self.tallies.totals()
        if self._pid is not None:
            self._pid = None
            self.ensure_running()

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        with self._lock:
            for name, _, value in _in_flight(self.tallies):
                self._gauges[name].set(value)
            for api, total in self.tallies.totals().items():
                before = self._flushed.get(api) or Tally()
                for _, kind, _, label, attribute in _FAMILIES:
                    metric, now, then = self._metrics[attribute], getattr(total, attribute), getattr(before, attribute)
                    if kind == "histogram":
                        child = metric.labels(api)
                        # prometheus-client has no call to add n observations at once: its
                        # per-bucket values (non-cumulative, +Inf last, as ours) take them.
                        for index, (a, b) in enumerate(zip(now.counts, then.counts)):
                            if a != b:
                                child._buckets[index].inc(a - b)
                        if now.sum != then.sum:
                            child._sum.inc(now.sum - then.sum)
                    elif label is not None:
                        for key, count in now.items():
                            if count != then.get(key, 0):
                                metric.labels(api, str(key)).inc(count - then.get(key, 0))
                    elif now != then:
                        metric.labels(api).inc(now - then)
                self._flushed[api] = total


#: How often multiprocess mode writes the counts of a process to its files.
FLUSH_SECONDS = 1.0

_TALLIES: dict[int, tuple[CollectorRegistry | None, Tallies]] = {}
_FLUSHERS: list[_Flusher] = []


def _tallies_for(registry: CollectorRegistry | None) -> Tallies:
    """The tallies of ``registry``, made and registered once (prometheus-client
    refuses a metric name registered twice, and two observers in one process
    should count into the same series); ``None``: multiprocess mode."""
    made = _TALLIES.get(id(registry))
    if made is None or made[0] is not registry:
        tallies = Tallies()
        if registry is None:
            _FLUSHERS.append(_Flusher(tallies))
        else:
            registry.register(_Collector(tallies))
        made = _TALLIES[id(registry)] = (registry, tallies)
    return made[1]


def _multiprocess() -> bool:
    """Whether prometheus-client chose its multiprocess values at import (``PROMETHEUS_MULTIPROC_DIR`` set)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def counts_every_process() -> bool:
    """Whether :func:`refusal_totals` reads every worker's counts (this process
    counts into ``PROMETHEUS_MULTIPROC_DIR``), not this process's alone."""
    return bool(os.environ.get(MULTIPROC_DIR_ENV)) and _multiprocess()


class PrometheusObserver(Observer):
    """Count every request of the adapters it is given to, as Prometheus metrics.

    ``registry``: where the metrics are exposed; by default
    prometheus-client's global ``REGISTRY`` (what ``/metrics`` apps and
    framework exporters expose). In multiprocess mode the counts go to
    ``PROMETHEUS_MULTIPROC_DIR`` instead, within :data:`FLUSH_SECONDS`, and
    a scrape reads them all from there. Observers on the same registry share
    their counts, so several adapters in a process add up.

    The in-flight gauges are the figures of the admission of every API the
    observer is told it ``observes`` (each adapter it is given to tells it),
    and of ``admission`` if given (for a flow of a host's own).

    It counts (:attr:`~ingest_mw.observe.Observer.tallies`, see
    :mod:`ingest_mw.counts`): the flow adds each request's facts to plain
    numbers of this thread's own, with no observation made, no hook called,
    no lock and no label lookup; the metric families are built from those
    numbers when scraped.
    """

    tallies: Tallies

    def __init__(self, *, registry: CollectorRegistry | None = None, admission: Admission | None = None) -> None:
        if registry is None and not _multiprocess():
            if os.environ.get(MULTIPROC_DIR_ENV):
                # render_metrics() reads the directory, where these counts would never be.
                logger.warning(
                    "ingest_mw: %s is set, but prometheus_client was imported before it was: this process"
                    " counts in its own memory and /metrics, which reads the directory, will not show its"
                    " counts; set %s before anything imports prometheus_client",
                    MULTIPROC_DIR_ENV,
                    MULTIPROC_DIR_ENV,
                )
            registry = REGISTRY
        self.registry = registry
        self.tallies = _tallies_for(registry)
        if admission is not None:
            self.tallies.watch([admission])
        if registry is None:
            _FLUSHERS[-1].ensure_running()

    def observes(self, apis: Sequence[IngestAPI]) -> None:
        self.tallies.watch([api.admission for api in apis])

    def __repr__(self) -> str:
        return f"PrometheusObserver(registry={self.registry!r})"


# --- several processes ------------------------------------------------------------------
def prepare_multiprocess(directory: str | os.PathLike[str] | None = None) -> str:
    """Put the workers a supervisor is about to start in multiprocess mode: the
    directory of ``PROMETHEUS_MULTIPROC_DIR`` (or ``directory``, or a new
    temporary one, removed at exit) emptied of earlier runs' files, and the
    variable set in this process's environment, which the workers inherit.

    Call it in the supervisor before the workers start, as ``serve --workers N``
    does; each worker must import prometheus-client itself, after this (a
    worker that is *spawned*, as uvicorn's are, does; one forked from a
    parent that imported it would keep single-process values).
    """
    given = directory if directory is not None else os.environ.get(MULTIPROC_DIR_ENV)
    if given:
        path = os.fspath(given)
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):  # prometheus-client's per-process files, nothing else
                os.remove(os.path.join(path, name))
    else:
        path = tempfile.mkdtemp(prefix="ingest-mw-metrics-")
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.environ[MULTIPROC_DIR_ENV] = path
    return path


def forget_process(pid: int) -> None:
    """Tell the metrics that worker ``pid`` has exited (its in-flight gauges no
    longer count): for the supervisor, when it reaps a worker."""
    if os.environ.get(MULTIPROC_DIR_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


# --- reading back -----------------------------------------------------------------------
def refusal_totals(registry: CollectorRegistry | None = None) -> dict[str, dict[str, int]] | None:
    """What the observers have refused so far, summed over the APIs, or ``None``
    when no :class:`PrometheusObserver` counts in this process (metrics off):
    ``{"requests": {status: requests}, "events": {reason: events}}``, the
    requests answered 4xx/5xx (refused whole) and the events refused inside
    accepted requests, both counters since the start.

    In multiprocess mode every process's counts are read from
    ``PROMETHEUS_MULTIPROC_DIR`` (the whole server's, at most
    :data:`FLUSH_SECONDS` old), else this process's tallies of ``registry``
    (the global one by default). For readers beside the ingest path (the Live
    Tail page samples it): it costs a request nothing.
    """
    requests: dict[str, int] = {}
    events: dict[str, int] = {}
    if counts_every_process():
        directory = os.environ[MULTIPROC_DIR_ENV]
        if not _FLUSHERS:
            return None
        for flusher in _FLUSHERS:
            flusher.flush()
        collector = multiprocess.MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]
        for family in collector.collect():  # type: ignore[no-untyped-call]
            for sample in family.samples:
                if sample.name == "ingest_mw_requests_total" and int(sample.labels["status"]) >= 400:
                    key = sample.labels["status"]
                    requests[key] = requests.get(key, 0) + int(sample.value)
                elif sample.name == "ingest_mw_events_refused_total":
                    key = sample.labels["reason"]
                    events[key] = events.get(key, 0) + int(sample.value)
        return {"requests": requests, "events": events}
    registry = REGISTRY if registry is None else registry
    made = _TALLIES.get(id(registry))
    if made is None or made[0] is not registry:
        return None
    for tally in made[1].totals().values():
        for status, count in tally.requests.items():
            if status >= 400:
                requests[str(status)] = requests.get(str(status), 0) + count
        for reason, count in tally.refused.items():
            events[reason] = events.get(reason, 0) + count
    return {"requests": requests, "events": events}


# --- exposition ------------------------------------------------------------------------
def render_metrics(registry: CollectorRegistry | None = None, accept: str | None = None) -> Response:
    """The metrics in the text format the scraper asked for in ``accept``
    (Prometheus' by default, OpenMetrics if asked). In multiprocess mode
    every process's values are read from ``PROMETHEUS_MULTIPROC_DIR`` and
    summed, as prometheus-client documents; else ``registry`` (the global one
    by default) is read."""
    directory = os.environ.get(MULTIPROC_DIR_ENV)
    if directory:
        for flusher in _FLUSHERS:  # this process's own counts, up to now
            flusher.flush()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    elif registry is None:
        registry = REGISTRY
    encode, content_type = choose_encoder(accept or "")
    return Response(200, (("Content-Type", content_type),), encode(registry))


def _answer(method: str, accept: str | None, registry: CollectorRegistry | None) -> Response:
    return read_only_refusal(method) or for_method(method, render_metrics(registry, accept))


def metrics_asgi_app(registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """An ASGI app answering ``GET`` with the metrics (see :func:`render_metrics`),
    at whatever path it is mounted. Rendering runs in a worker thread: in
    multiprocess mode it reads a file per process."""
    render = sync_to_async(_answer, thread_sensitive=False)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        accept = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"accept"), None)
        await send_response(await render(scope["method"], accept, registry), send)

    return app


def metrics_wsgi_app(registry: CollectorRegistry | None = None) -> Callable[..., Any]:
    """A WSGI app answering ``GET`` with the metrics (see :func:`render_metrics`)."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        return write_response(_answer(environ["REQUEST_METHOD"], environ.get("HTTP_ACCEPT"), registry), start_response)

    return app
