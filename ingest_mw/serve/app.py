"""The ASGI app ``serve`` runs in each worker, built from a picklable :class:`AppSpec`.

Workers are separate processes (uvicorn's supervisor spawns them), so each
builds its own sink connection, rate-limit storage, admission limits and
metrics from the spec at lifespan start-up, never sharing one opened in the
parent. Beside the ingest APIs: ``/healthz``, ``/readyz`` and ``/metrics``
(the adapter's ``endpoints=``), exact paths no ingest route shadows.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from ..admission import Admission, arguments_for
from ..api import IngestAPI, Response
from ..asgi import ASGIApp, ASGIApplication, Receive, Scope, Send, send_response
from ..baselime import BaselimeAPI
from ..betterstack import BetterStackAPI
from ..eventcaps import MAX_DEPTH, MAX_EVENTS
from ..health import HEALTH_PATH, METRICS_PATH, READY_PATH, Health, health_asgi_endpoints
from ..http import PLAIN_TEXT
from ..observe import Observer, one_observer
from ..otlp import PATH_BESIDE_BASELIME, OTLPLogsAPI
from ..ratelimit import RateLimit
from ..sinks.disk import MIN_FREE_BYTES
from ..sinks.url import sink_from_url
from ..ui import UI_RATE_LIMIT, UIMount
from .options import default_of

__all__ = ["ADMISSION_OPTIONS", "GC_THRESHOLD", "AppSpec", "ServeApp", "build_rate_limit", "routes"]

#: The cyclic GC's first threshold under ``serve`` (Python's default is 700).
GC_THRESHOLD = 20_000

#: The options of ``serve`` that are :class:`~ingest_mw.admission.Admission`'s arguments, by the same name.
ADMISSION_OPTIONS = (
    "max_requests",
    "max_requests_per_client",
    "max_body_bytes_in_flight",
    "max_concurrent_stores",
    "max_storage_waiting",
    "storage_wait",
    "max_parallel_decodes",
    "body_idle_timeout",
    "retry_after",
)

UI_PATH = "/ui"  # the Live Tail page, served only when a UI token is given


def routes(metrics: bool, *, ui: bool = False) -> str:
    """The routes a worker serves, for the start-up line."""
    operator = [HEALTH_PATH, READY_PATH] + ([METRICS_PATH] if metrics else []) + ([UI_PATH] if ui else [])
    ingest = f"POST / (Better Stack), POST {PATH_BESIDE_BASELIME} (OTLP), POST /v1/<dataset> (Baselime)"
    return ingest + ", " + ", ".join(f"GET {p}" for p in operator)


def build_rate_limit(
    limit: str,
    storage_uri: str,
    trusted_proxies: tuple[str, ...],
    *,
    storage_timeout: float | None = default_of(RateLimit, "storage_timeout"),
    fail_open: bool = default_of(RateLimit, "fail_open"),
) -> RateLimit | None:
    """The ``--rate-limit*`` options as one component: both APIs share it, so a
    client has one budget on the whole server."""
    if limit.strip().lower() == "none":
        return None
    return RateLimit(
        limit=limit,
        storage_uri=storage_uri,
        trusted_proxies=trusted_proxies,
        storage_timeout=storage_timeout,
        fail_open=fail_open,
    )


@dataclass(frozen=True, kw_only=True)
class AppSpec:
    """Everything a worker needs to build the app: plain values only."""

    sink_url: str
    tokens: dict[str, str]
    api_keys: dict[str, str]
    rate_limit: str
    rate_limit_storage: str
    trusted_proxies: tuple[str, ...] = ()
    rate_limit_storage_timeout: float | None = default_of(RateLimit, "storage_timeout")
    rate_limit_fail_open: bool = default_of(RateLimit, "fail_open")
    access_log: bool = False
    metrics: bool = False
    drain_delay: float = 0.0
    #: :class:`~ingest_mw.admission.Admission`'s arguments (its defaults for the others).
    admission: dict[str, Any] = field(default_factory=dict)
    max_events: int = MAX_EVENTS
    max_depth: int = MAX_DEPTH
    #: The Live Tail page's tokens; none: no page.
    ui_tokens: dict[str, str] = field(default_factory=dict)
    min_free_bytes: int = MIN_FREE_BYTES

    @classmethod
    def from_settings(cls, settings: Any, *, tokens: dict[str, str], api_keys: dict[str, str]) -> AppSpec:
        """The spec of ``serve``'s parsed ``settings`` (see :mod:`.options`) with the credentials resolved."""
        return cls(
            sink_url=settings.sink,
            tokens=tokens,
            api_keys=api_keys,
            rate_limit=settings.rate_limit,
            rate_limit_storage=settings.rate_limit_storage,
            trusted_proxies=tuple(settings.trusted_proxy),
            rate_limit_storage_timeout=settings.rate_limit_storage_timeout,
            rate_limit_fail_open=settings.rate_limit_fail_open,
            access_log=settings.access_log,
            metrics=settings.metrics,
            drain_delay=settings.drain_delay,
            admission={name: getattr(settings, name) for name in ADMISSION_OPTIONS},
            max_events=settings.max_events,
            max_depth=settings.max_depth,
            min_free_bytes=settings.min_free_bytes,
        )

    def rate_limit_component(self) -> RateLimit | None:
        return build_rate_limit(
            self.rate_limit,
            self.rate_limit_storage,
            self.trusted_proxies,
            storage_timeout=self.rate_limit_storage_timeout,
            fail_open=self.rate_limit_fail_open,
        )

    def apis(self, sink: object = None) -> list[IngestAPI]:
        """The three APIs, sharing one rate limit and this process's admission
        limits (``ValueError`` for a limit out of range, ``ImportError`` without
        the OTLP classes); ``sink``, the one they store into, may ask for its
        number of store slots (its ``concurrent_batches``)."""
        rate_limit = self.rate_limit_component()
        # An option not given is the component's default, or the sink's.
        given = {name: value for name, value in self.admission.items() if value is not None}
        admission = Admission(**arguments_for(sink, given))
        limits: dict[str, Any] = {
            "rate_limit": rate_limit,
            "admission": admission,
            "max_events": self.max_events,
            "max_depth": self.max_depth,
        }
        # Better Stack claims only "/" and OTLP only /otlp/v1/logs, so Baselime
        # serves /v1/<dataset> (and the 400 of a malformed one); any other path
        # gets the mount's 404.
        return [
            BetterStackAPI(self.tokens, **limits),
            # OTLP takes the Better Stack source tokens, as Better Stack's own OTLP endpoint does.
            OTLPLogsAPI(self.tokens, path=PATH_BESIDE_BASELIME, **limits),
            BaselimeAPI(self.api_keys, **limits),
        ]

    def observer(self) -> Observer | None:
        observers: list[Observer] = []
        if self.metrics:
            from ..metrics import PrometheusObserver

            observers.append(PrometheusObserver())
        if self.access_log:
            from ..logs import AccessLogObserver

            observers.append(AccessLogObserver())
        return one_observer(observers)

    def build(self) -> tuple[ASGIApp, Health, UIMount | None]:
        """The app to serve (the ingest APIs with the operator endpoints), its
        health, and the Live Tail page beside it when a UI token is given."""
        sink = sink_from_url(self.sink_url, min_free_bytes=self.min_free_bytes)
        apis = self.apis(sink)
        health = Health(sinks=[sink], rate_limits=[apis[0].rate_limit])
        endpoints = health_asgi_endpoints(health)
        if self.metrics:
            from ..metrics import metrics_asgi_app

            endpoints[METRICS_PATH] = metrics_asgi_app()
        app = ASGIApp(apis, sink=sink, observer=self.observer(), endpoints=endpoints)
        ui = None
        if self.ui_tokens:
            # Counted where the ingest requests are (--rate-limit-storage, the
            # client behind the same proxies), under keys of its own.
            ui_limit = RateLimit(
                limit=UI_RATE_LIMIT,
                storage_uri=self.rate_limit_storage,
                trusted_proxies=self.trusted_proxies,
                key_prefix="ui/",
                storage_timeout=self.rate_limit_storage_timeout,
                fail_open=self.rate_limit_fail_open,
            )
            ui = UIMount.for_sink(app, sink=sink, tokens=self.ui_tokens, prefix=UI_PATH, rate_limit=ui_limit)
        return app, health, ui


#: The answer of a request still unfinished when the graceful timeout is over.
_DROPPED = Response(503, (PLAIN_TEXT, ("Retry-After", "1")), b"server shutting down: send it again", close=True)


async def _answer_dropped(send: Send) -> None:
    try:
        await send_response(_DROPPED, send)
    except Exception:  # the response had started already, or the client is gone: nothing to tell
        pass


@dataclass
class ServeApp:
    """The app of one ``serve`` worker: the ingest APIs and the operator
    endpoints, built at lifespan start-up."""

    spec: AppSpec
    _health: Health | None = field(default=None, init=False, repr=False)
    _app: ASGIApp | None = field(default=None, init=False, repr=False)
    _ui: UIMount | None = field(default=None, init=False, repr=False)
    _served: ASGIApplication | None = field(default=None, init=False, repr=False)  # the page's mount, or _app

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec}  # what a spawned worker gets: never an open sink

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"])  # type: ignore[misc]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        app = self._served
        assert app is not None, "lifespan start-up builds the app"
        try:
            await app(scope, receive, send)
        except asyncio.CancelledError:
            # uvicorn cancels what still runs when --graceful-timeout is over (a
            # client stalled mid-body): nothing of it was acknowledged; tell
            # the client to come back, rather than a traceback in the log.
            await _answer_dropped(send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self._app, self._health, self._ui = self.spec.build()
                    self._served = self._ui or self._app
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": f"cannot start: {error}"})
                    return
                # Decoding a 1000-event body makes some 4,000 container objects at
                # once, all alive until the batch is stored: at the default
                # threshold the cyclic GC would scan them several times per
                # request and free nothing. This process is ours.
                gc.set_threshold(GC_THRESHOLD, 20, 20)
                self._drain_on_signals()
                if self._ui is not None:
                    self._ui.started()  # its streams end first on SIGTERM, so that shutdown waits for none
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._ui is not None:
                    await self._ui.aclose()
                if self._app is not None:
                    await self._app.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _drain_on_signals(self) -> None:
        """On SIGTERM/SIGINT, start draining (``/readyz`` answers 503) and hand
        the signal to uvicorn's handler after ``drain_delay`` seconds.

        uvicorn installs its handlers before lifespan start-up and puts its
        own predecessors back on exit, so wrapping them here is undone with
        them."""
        health = self._health
        if health is None or threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        delay = self.spec.drain_delay
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)
            if not callable(previous):
                continue

            def drain(sig: int, frame: FrameType | None, previous: Any = previous) -> None:
                if health.draining or delay <= 0:  # a second signal: no more waiting
                    health.drain()
                    previous(sig, frame)
                    return
                health.drain()
                loop.call_soon_threadsafe(loop.call_later, delay, previous, sig, None)

            signal.signal(signum, drain)
