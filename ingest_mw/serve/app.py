"""The ASGI app ``serve`` runs in each worker, built from a picklable :class:`AppSpec`.

Workers are separate processes (uvicorn's supervisor spawns them), so each
builds its own sink connection and rate-limit storage from the spec at
lifespan start-up, never sharing one opened in the parent.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from ..asgi import ASGIApp, Receive, Scope, Send, route_path
from ..baselime import BaselimeAPI
from ..betterstack import BetterStackAPI
from ..ratelimit import RateLimit
from ..sinks.url import sink_from_url

__all__ = ["AppSpec", "ServeApp", "build_rate_limit"]

#: The cyclic GC's first threshold under ``serve`` (Python's default is 700).
GC_THRESHOLD = 20_000

access = logging.getLogger("ingest_mw.access")


def build_rate_limit(limit: str, storage_uri: str, trusted_proxies: tuple[str, ...]) -> RateLimit | None:
    """The ``--rate-limit*`` options as one component: both APIs share it, so a
    client has one budget on the whole server."""
    if limit.strip().lower() == "none":
        return None
    return RateLimit(limit=limit, storage_uri=storage_uri, trusted_proxies=trusted_proxies)


@dataclass(frozen=True, kw_only=True)
class AppSpec:
    """Everything a worker needs to build the app: plain values only."""

    sink_url: str
    tokens: dict[str, str]
    api_keys: dict[str, str]
    rate_limit: str
    rate_limit_storage: str
    trusted_proxies: tuple[str, ...] = ()
    access_log: bool = False
    drain_delay: float = 0.0

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
            access_log=settings.access_log,
            drain_delay=settings.drain_delay,
        )

    def build(self) -> ASGIApp:
        rate_limit = build_rate_limit(self.rate_limit, self.rate_limit_storage, self.trusted_proxies)
        # Better Stack claims only "/", so Baselime serves /v1/<dataset> (and the
        # 400 for every other path).
        apis = [BetterStackAPI(self.tokens, rate_limit=rate_limit), BaselimeAPI(self.api_keys, rate_limit=rate_limit)]
        return ASGIApp(apis, sink=sink_from_url(self.sink_url))


async def _answer_dropped(send: Send) -> None:
    headers = [(b"content-type", b"text/plain"), (b"retry-after", b"1"), (b"connection", b"close")]
    body = b"server shutting down: send it again"
    try:
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except Exception:  # the response had started already, or the client is gone: nothing to tell
        pass


@dataclass
class ServeApp:
    """The app of one ``serve`` worker: the ingest APIs, built at lifespan start-up."""

    spec: AppSpec
    draining: bool = field(default=False, init=False)
    _app: ASGIApp | None = field(default=None, init=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec}  # what a spawned worker gets: never an open sink

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"])  # type: ignore[misc]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        app = self._app
        assert app is not None, "lifespan start-up builds the app"
        try:
            if scope["type"] != "http" or not self.spec.access_log:
                await app(scope, receive, send)
            else:
                await self._logged(app, scope, receive, send)
        except asyncio.CancelledError:
            # uvicorn cancels what still runs when --graceful-timeout is over (a
            # client stalled mid-body): nothing of it was acknowledged; tell
            # the client to come back, rather than a traceback in the log.
            await _answer_dropped(send)

    async def _logged(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 0

        async def send_noting_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_noting_status)
        finally:
            # The path only: a query string may hold a token.
            access.info(
                "%s %s %d",
                scope["method"],
                route_path(scope),
                status,
                extra={"status": status, "duration": round(time.perf_counter() - started, 6)},
            )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self._app = self.spec.build()
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": f"cannot start: {error}"})
                    return
                # Decoding a 1000-event body makes some 4,000 container objects at
                # once, all alive until the batch is stored: at the default
                # threshold the cyclic GC would scan them several times per
                # request and free nothing. This process is ours.
                gc.set_threshold(GC_THRESHOLD, 20, 20)
                self._drain_on_signals()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._app is not None:
                    await self._app.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _drain_on_signals(self) -> None:
        """On SIGTERM/SIGINT, mark this worker draining (``/readyz`` answers 503)
        and hand the signal to uvicorn's handler after ``drain_delay`` seconds.

        uvicorn installs its handlers before lifespan start-up and puts its
        own predecessors back on exit, so wrapping them here is undone with
        them."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)
            if not callable(previous):
                continue

            def drain(sig: int, frame: FrameType | None, previous: Any = previous) -> None:
                if self.draining or self.spec.drain_delay <= 0:  # a second signal: no more waiting
                    self.draining = True
                    previous(sig, frame)
                    return
                self.draining = True
                loop.call_soon_threadsafe(loop.call_later, self.spec.drain_delay, previous, sig, None)

            signal.signal(signum, drain)
