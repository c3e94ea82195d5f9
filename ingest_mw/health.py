"""Liveness and readiness: ``/healthz`` and ``/readyz`` for load balancers and orchestrators.

``/healthz`` answers ``200 ok`` whenever the process can answer at all: it
checks nothing, so a restart is never triggered by a storage outage.
``/readyz`` answers ``200 ok`` only while every sink given is writable
(its ``check()`` / ``acheck()``, if it has one, passes), every rate limit's
storage answers, and the server is not draining; otherwise ``503`` with the
reasons, so a load balancer sends its traffic elsewhere. Both are plain
text, unauthenticated and cheap; each check is bounded in time (a frozen
Redis or a locked database makes the probe answer 503 within ``timeout``,
never hang), and a check still running from an earlier probe is waited on,
not started again, so probes cannot pile up threads.

Wiring, for a host or for ``serve``::

    health = Health(sinks=[sink], rate_limits=[rate_limit])
    app = EndpointsASGIMiddleware(ingest_app, health_asgi_endpoints(health))
    ...
    health.draining = True   # at shutdown, before in-flight requests finish: /readyz says 503

(``health_wsgi_endpoints`` and :class:`~ingest_mw.endpoints.EndpointsWSGIMiddleware`
for WSGI; :meth:`Health.check` / :meth:`Health.acheck` for a host's own
probe view.) A reason in the answer names the kind of check and the class
of the sink, never a path, a URI or a credential; the log line of a change
of readiness adds a sink's own one-line reason (its path, or its URL with
the password masked).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple

from asgiref.sync import async_to_sync, iscoroutinefunction

from .api import Response
from .asgi import send_response
from .http import PLAIN_TEXT, for_method, read_only_refusal
from .ratelimit import RateLimit
from .sinks.base import SinkUnavailable
from .wsgi import write_response

__all__ = [
    "HEALTH_PATH",
    "READY_PATH",
    "Health",
    "Readiness",
    "health_asgi_endpoints",
    "health_wsgi_endpoints",
]

logger = logging.getLogger("ingest_mw.health")

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
#: Where ``/metrics`` is served (:mod:`ingest_mw.metrics`): named here, which needs no prometheus-client.
METRICS_PATH = "/metrics"

# Checks that block (a sync sink's check, the sync rate-limit storage) run
# here, so that a frozen one can be given up on. Few threads: at most one
# check of each kind runs at a time.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="ingest_mw-health")


def _read_failure(task: asyncio.Future[object]) -> None:
    """Mark a check's failure as read (the next probe runs the check anew)."""
    if not task.cancelled():
        task.exception()


class Readiness(NamedTuple):
    """The outcome of the readiness checks: ``ready``, or the ``problems`` why not."""

    ready: bool
    problems: tuple[str, ...] = ()

    def response(self) -> Response:
        if self.ready:
            return _OK
        return Response(503, _HEADERS, ("not ready: " + "; ".join(self.problems) + "\n").encode())


_HEADERS = (PLAIN_TEXT, ("Cache-Control", "no-store"))
_OK = Response(200, _HEADERS, b"ok\n")


def _passed(result: object) -> bool:
    """A check passes unless it answers ``False`` or raises (a sink's ``check()`` may return nothing)."""
    return result is not False


class _Check:
    """One readiness check, sync (``call``) and/or async (``acall``), at most one
    run of each at a time."""

    def __init__(
        self,
        name: str,
        call: Callable[[], object] | None,
        acall: Callable[[], Awaitable[object]] | None,
    ) -> None:
        self.name = name
        self.call = call
        self.acall = acall
        self._lock = threading.Lock()
        self._future: concurrent.futures.Future[object] | None = None
        self._tasks: dict[asyncio.AbstractEventLoop, asyncio.Future[object]] = {}

    def submit(self) -> concurrent.futures.Future[object]:
        """The sync check running in a worker thread (the one still running, if any)."""
        with self._lock:
            if self._future is None or self._future.done():
                call = self.call if self.call is not None else async_to_sync(self.acall)  # type: ignore[arg-type]
                self._future = _POOL.submit(call)
            return self._future

    def task(self) -> asyncio.Future[object]:
        """The check running on this event loop: the async one, or the sync one in a thread."""
        loop = asyncio.get_running_loop()
        task = self._tasks.get(loop)
        if task is None or task.done():
            if self.acall is not None:
                task = asyncio.ensure_future(self.acall())
            else:
                task = asyncio.wrap_future(self.submit())
            # A check that outlives its probe ends when nobody waits for it: its
            # failure is read here, or asyncio logs it with a traceback.
            task.add_done_callback(_read_failure)
            self._tasks = {**{lp: t for lp, t in self._tasks.items() if not lp.is_closed()}, loop: task}
        return task

    def problem(self, error: BaseException | None, result: object) -> str | None:
        if isinstance(error, (TimeoutError, concurrent.futures.TimeoutError)):
            return f"{self.name} did not answer in time"
        if error is not None or not _passed(result):
            return f"{self.name} unavailable"
        return None


class Health:
    """The liveness and readiness of one server: its sinks, its rate limits, its draining flag.

    ``sinks``: the storage hooks to check (each one's ``acheck()`` or
    ``check()``, if it has one; a sink with neither is taken as writable).
    ``rate_limits``: the rate limits whose storage must answer (``None``
    entries are skipped, so an API's ``rate_limit`` can be passed as it is).
    ``timeout``: how long a probe waits for its checks, in seconds.
    """

    def __init__(
        self,
        *,
        sinks: Iterable[object] = (),
        rate_limits: Iterable[RateLimit | None] = (),
        # Under the 1 s an orchestrator's probe waits by default (Kubernetes'
        # timeoutSeconds), so a slow check reads as "not ready", not as a timeout.
        timeout: float = 0.5,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.timeout = timeout
        #: Set at shutdown: ``/readyz`` then answers 503 while in-flight requests finish.
        self.draining = False
        self._checks: list[_Check] = []
        for sink in sinks:
            check, acheck = getattr(sink, "check", None), getattr(sink, "acheck", None)
            if check is not None and iscoroutinefunction(check):
                check, acheck = None, check
            if check is not None or acheck is not None:
                self._checks.append(_Check(f"sink {type(sink).__name__}", check, acheck))
        seen: set[int] = set()
        for rate_limit in rate_limits:
            if rate_limit is not None and id(rate_limit) not in seen:  # APIs may share one
                seen.add(id(rate_limit))
                self._checks.append(_Check("rate-limit storage", rate_limit.check, rate_limit.acheck))
        self._was_ready = True

    def drain(self) -> None:
        """Start draining: readiness fails from now on (``draining = True``)."""
        self.draining = True

    def check(self) -> Readiness:
        """Run the checks from sync code (each in a worker thread), waiting at most ``timeout``."""
        if self.draining:
            return self._report(("draining",))
        futures = [check.submit() for check in self._checks]
        done, _ = concurrent.futures.wait(futures, timeout=self.timeout)
        outcomes: list[tuple[_Check, BaseException | None, object]] = []
        for check, future in zip(self._checks, futures):
            if future not in done:
                outcomes.append((check, TimeoutError(), None))
            else:
                outcomes.append((check, future.exception(), None if future.exception() else future.result()))
        return self._judge(outcomes)

    async def acheck(self) -> Readiness:
        """Run the checks from async code (async ones on the loop), waiting at most ``timeout``."""
        if self.draining:
            return self._report(("draining",))
        tasks = [check.task() for check in self._checks]
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout)
        outcomes: list[tuple[_Check, BaseException | None, object]] = []
        for check, task in zip(self._checks, tasks):
            if not task.done():
                outcomes.append((check, TimeoutError(), None))
            elif task.cancelled():
                outcomes.append((check, asyncio.CancelledError(), None))
            else:
                outcomes.append((check, task.exception(), None if task.exception() else task.result()))
        return self._judge(outcomes)

    def _judge(self, outcomes: list[tuple[_Check, BaseException | None, object]]) -> Readiness:
        """The readiness that each check's error or result gives. A sink's
        :class:`~ingest_mw.sinks.SinkUnavailable` says why in the log line
        (its one line names no secret), never in the answer."""
        problems = tuple(problem for check, error, result in outcomes if (problem := check.problem(error, result)))
        why = [str(error) for _, error, _ in outcomes if isinstance(error, SinkUnavailable)]
        return self._report(problems, why)

    def _report(self, problems: tuple[str, ...], why: list[str] | None = None) -> Readiness:
        ready = not problems
        if ready != self._was_ready:  # a line when readiness changes, not one per probe
            self._was_ready = ready
            if ready:
                logger.warning("ingest_mw: ready again")
            else:
                said = f" ({'; '.join(why)})" if why else ""
                logger.warning("ingest_mw: not ready: %s%s", "; ".join(problems), said)
        return Readiness(ready, problems)


# --- the endpoints -------------------------------------------------------------------------
def health_asgi_endpoints(health: Health) -> dict[str, Callable[..., Any]]:
    """``{"/healthz": app, "/readyz": app}``: the two probes as ASGI apps, for
    :class:`~ingest_mw.endpoints.EndpointsASGIMiddleware` (or to mount yourself)."""

    async def live(scope: Any, receive: Any, send: Any) -> None:
        method = scope["method"]
        await send_response(read_only_refusal(method) or for_method(method, _OK), send)

    async def ready(scope: Any, receive: Any, send: Any) -> None:
        method = scope["method"]
        refusal = read_only_refusal(method)
        await send_response(refusal or for_method(method, (await health.acheck()).response()), send)

    return {HEALTH_PATH: live, READY_PATH: ready}


def health_wsgi_endpoints(health: Health) -> dict[str, Callable[..., Any]]:
    """``{"/healthz": app, "/readyz": app}``: the two probes as WSGI apps, for
    :class:`~ingest_mw.endpoints.EndpointsWSGIMiddleware` (or to mount yourself)."""

    def live(environ: dict[str, Any], start_response: Any) -> Any:
        method = environ["REQUEST_METHOD"]
        return write_response(read_only_refusal(method) or for_method(method, _OK), start_response)

    def ready(environ: dict[str, Any], start_response: Any) -> Any:
        method = environ["REQUEST_METHOD"]
        refusal = read_only_refusal(method)
        return write_response(refusal or for_method(method, health.check().response()), start_response)

    return {HEALTH_PATH: live, READY_PATH: ready}
