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
``prometheus_client``, as prometheus-client documents. Every worker then
writes its values to files there and whichever worker answers ``/metrics``
sums them all. The supervisor empties the directory before the workers start,
and calls ``prometheus_client.multiprocess.mark_process_dead(pid)`` when one
exits, so the in-flight gauges (``livesum``) forget it.

Every metric has the label ``api`` (``betterstack``, ``baselime``); see
``docs/observability.md`` for the list. Per request the observer only adds
to label children bound once per API (and per status or reason the first
time each is seen): no label lookup, no dict made.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from asgiref.sync import sync_to_async
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values
from prometheus_client.exposition import choose_encoder

from .api import Response
from .asgi import send_response
from .http import PLAIN_TEXT
from .observe import Observation, Observer
from .wsgi import write_response

__all__ = [
    "DURATION_BUCKETS",
    "METRICS_PATH",
    "MULTIPROC_DIR_ENV",
    "PrometheusObserver",
    "metrics_asgi_app",
    "metrics_wsgi_app",
    "render_metrics",
]

#: Where a server exposes the metrics, by convention.
METRICS_PATH = "/metrics"
#: The environment variable that puts prometheus-client in multiprocess mode.
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Buckets (seconds) of the storage and request duration histograms: an
#: SQLite commit takes a fraction of a millisecond, a remote database a few
#: milliseconds, a storage in trouble seconds; Prometheus' default buckets
#: start at 5 ms and would put every healthy store in the first one.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Metrics:
    """The metric families, made once per registry (prometheus-client refuses
    a name registered twice, and two observers in one process should count
    into the same series)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        def counter(name: str, doc: str, labels: Iterable[str] = ("api",)) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def gauge(name: str, doc: str) -> Gauge:
            # livesum: the processes' values added up, those of exited ones left out.
            return Gauge(name, doc, ("api",), registry=registry, multiprocess_mode="livesum")

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, ("api",), registry=registry, buckets=DURATION_BUCKETS)

        self.requests = counter("ingest_mw_requests", "Requests answered, by API and status.", ("api", "status"))
        self.events_accepted = counter("ingest_mw_events_accepted", "Events stored and acknowledged.")
        self.events_refused = counter(
            "ingest_mw_events_refused",
            "Events refused while their request was served, by reason (not those of requests refused whole).",
            ("api", "reason"),
        )
        self.wire_bytes = counter("ingest_mw_request_body_bytes", "Request body bytes read, as sent on the wire.")
        self.body_bytes = counter(
            "ingest_mw_request_body_decoded_bytes", "Request body bytes read, after Content-Encoding is undone."
        )
        self.storage = histogram("ingest_mw_storage_duration_seconds", "Time in the storage hook, per batch.")
        self.duration = histogram("ingest_mw_request_duration_seconds", "Time to decide a request's answer.")
        self.in_flight = gauge("ingest_mw_requests_in_flight", "Requests being served.")
        self.body_in_flight = gauge(
            "ingest_mw_request_body_bytes_in_flight",
            "Decoded body bytes of requests read and not yet answered (being decoded and stored).",
        )
        self.rate_limited = counter("ingest_mw_rate_limited", "Requests refused by the rate limit.")
        self.storage_errors = counter("ingest_mw_storage_errors", "Batches the storage hook failed to store.")
        self.rate_limit_storage_errors = counter(
            "ingest_mw_rate_limit_storage_errors", "Requests whose rate-limit storage could not be reached."
        )


_METRICS: dict[int, tuple[CollectorRegistry | None, _Metrics]] = {}


def _metrics_for(registry: CollectorRegistry | None) -> _Metrics:
    made = _METRICS.get(id(registry))
    if made is None or made[0] is not registry:
        made = _METRICS[id(registry)] = (registry, _Metrics(registry))
    return made[1]


class _APIChildren:
    """One API's label children, bound once."""

    __slots__ = (
        "metrics",
        "api",
        "requests",
        "refused",
        "events_accepted",
        "wire_bytes",
        "body_bytes",
        "storage",
        "duration",
        "in_flight",
        "body_in_flight",
        "rate_limited",
        "storage_errors",
        "rate_limit_storage_errors",
    )

    def __init__(self, metrics: _Metrics, api: str) -> None:
        self.metrics = metrics
        self.api = api
        self.requests: dict[int, Any] = {}
        self.refused: dict[str, Any] = {}
        self.events_accepted = metrics.events_accepted.labels(api)
        self.wire_bytes = metrics.wire_bytes.labels(api)
        self.body_bytes = metrics.body_bytes.labels(api)
        self.storage = metrics.storage.labels(api)
        self.duration = metrics.duration.labels(api)
        self.in_flight = metrics.in_flight.labels(api)
        self.body_in_flight = metrics.body_in_flight.labels(api)
        self.rate_limited = metrics.rate_limited.labels(api)
        self.storage_errors = metrics.storage_errors.labels(api)
        self.rate_limit_storage_errors = metrics.rate_limit_storage_errors.labels(api)

    def status(self, status: int) -> Any:
        child = self.requests.get(status)
        if child is None:
            child = self.requests[status] = self.metrics.requests.labels(self.api, str(status))
        return child

    def reason(self, reason: str) -> Any:
        child = self.refused.get(reason)
        if child is None:
            child = self.refused[reason] = self.metrics.events_refused.labels(self.api, reason)
        return child


class PrometheusObserver(Observer):
    """Count every request of the adapters it is given to in Prometheus metrics.

    ``registry``: where the metrics are registered; by default
    prometheus-client's global ``REGISTRY`` (what ``/metrics`` apps and
    framework exporters expose), or none in multiprocess mode (the values
    go to ``PROMETHEUS_MULTIPROC_DIR`` and a scrape reads them from there).
    Observers on the same registry share one set of metrics, so several
    adapters in a process add up.
    """

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        if registry is None and not values.ValueClass._multiprocess:
            registry = REGISTRY
        self.registry = registry
        self._metrics = _metrics_for(registry)
        self._apis: dict[str, _APIChildren] = {}

    def _children(self, api: str) -> _APIChildren:
        children = self._apis.get(api)
        if children is None:
            children = self._apis[api] = _APIChildren(self._metrics, api)
        return children

    def started(self, seen: Observation) -> None:
        self._children(seen.api).in_flight.inc()

    def received(self, seen: Observation) -> None:
        if seen.body_bytes:
            self._children(seen.api).body_in_flight.inc(seen.body_bytes)

    def finished(self, seen: Observation) -> None:
        children = self._children(seen.api)
        children.in_flight.dec()
        children.status(seen.status).inc()
        children.duration.observe(seen.duration_seconds)
        if seen.body_bytes:
            children.body_in_flight.dec(seen.body_bytes)
            children.body_bytes.inc(seen.body_bytes)
        if seen.wire_bytes:
            children.wire_bytes.inc(seen.wire_bytes)
        if seen.events_accepted:
            children.events_accepted.inc(seen.events_accepted)
        if seen.storage_seconds is not None:
            children.storage.observe(seen.storage_seconds)
        if seen.events_refused:
            for reason, events in seen.refused.items():
                children.reason(reason).inc(events)
        if seen.storage_failed:
            children.storage_errors.inc()
        if seen.rate_limited:
            children.rate_limited.inc()
        if seen.rate_limit_unavailable:
            children.rate_limit_storage_errors.inc()

    def __repr__(self) -> str:
        return f"PrometheusObserver(registry={self.registry!r})"


# --- exposition ------------------------------------------------------------------------
def render_metrics(registry: CollectorRegistry | None = None, accept: str | None = None) -> Response:
    """The metrics in the text format the scraper asked for in ``accept``
    (Prometheus' by default, OpenMetrics if asked). In multiprocess mode
    every process's values are read from ``PROMETHEUS_MULTIPROC_DIR`` and
    summed, as prometheus-client documents; else ``registry`` (the global one
    by default) is read."""
    directory = os.environ.get(MULTIPROC_DIR_ENV)
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    elif registry is None:
        registry = REGISTRY
    encode, content_type = choose_encoder(accept or "")
    return Response(200, (("Content-Type", content_type),), encode(registry))


_METHOD_NOT_ALLOWED = Response(405, (PLAIN_TEXT, ("Allow", "GET, HEAD")), b"Method Not Allowed")


def _answer(method: str, accept: str | None, registry: CollectorRegistry | None) -> Response:
    if method not in ("GET", "HEAD"):
        return _METHOD_NOT_ALLOWED
    response = render_metrics(registry, accept)
    return Response(200, response.headers, b"" if method == "HEAD" else response.body)


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
