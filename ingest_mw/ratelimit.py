"""Per-client rate limits on the :pypi:`limits` library, for both adapters.

:class:`RateLimit` is one component with two faces: :meth:`RateLimit.hit`
counts a request against ``limits``' sync storage (WSGI: a blocking call is
what a WSGI worker expects) and :meth:`RateLimit.ahit` against its
:mod:`limits.aio` storage (ASGI: the event loop never waits on a socket).
What a hit *means* — which windows to count, which to report, when to
refuse and for how long — is decided once, in :meth:`RateLimit._decide`, a
generator that asks for storage calls and never makes them; each face only
answers those calls.

Response headers: ``RateLimit-Limit``, ``RateLimit-Remaining`` and
``RateLimit-Reset`` (seconds from now), the three fields of the IETF
``draft-ietf-httpapi-ratelimit-headers`` up to its 6th revision. They are
what clients and libraries implement today (express-rate-limit's
``draft-6``, for one), plain integers any client can read; the later
revisions' structured ``RateLimit``/``RateLimit-Policy`` pair is still a
moving target. A refusal adds ``Retry-After`` (RFC 9110), in whole seconds,
which every HTTP client knows. When several limits are configured
(``"10/second;500/minute"``), the headers report the one with the fewest
requests left — the one a client will meet first — and of those the one
whose window frees up last, so that ``Retry-After`` is never too early.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Literal, overload

from limits import RateLimitItem, parse_many
from limits.aio.strategies import STRATEGIES as ASYNC_STRATEGIES
from limits.aio.strategies import RateLimiter as AsyncRateLimiter
from limits.errors import StorageError
from limits.storage import SCHEMES, storage_from_string
from limits.strategies import STRATEGIES, RateLimiter
from limits.util import WindowStats

from .api import Request
from .clientip import TrustedProxies
from .errors import IngestError
from .redact import masked

__all__ = [
    "refused_credentials",
    "LIMIT_HEADER",
    "REMAINING_HEADER",
    "RESET_HEADER",
    "RETRY_AFTER_HEADER",
    "UNKNOWN_CLIENT",
    "KeyFunction",
    "RateLimit",
    "RateLimitDecision",
    "as_rate_limit",
]

logger = logging.getLogger(__name__)

LIMIT_HEADER = "RateLimit-Limit"
REMAINING_HEADER = "RateLimit-Remaining"
RESET_HEADER = "RateLimit-Reset"
RETRY_AFTER_HEADER = "Retry-After"

#: The key of requests whose server reports no peer address (a Unix socket):
#: they share one budget rather than escape the limit.
UNKNOWN_CLIENT = "unknown"

KeyFunction = Callable[[Request], str]

#: ``Retry-After`` of the 503 a fail-closed limit answers while its storage is
#: down: clients that honour it (OTLP exporters) come back in a few seconds,
#: neither at once nor after their own backoff has grown long.
UNAVAILABLE_RETRY_AFTER = 5


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """The outcome of one hit: ``headers`` for the response, and the error to
    answer with if the request is refused (``refusal``; ``None`` to go on).
    ``unavailable``: the storage could not be reached (the request was not
    counted; ``refusal`` is the 503 when the limit fails closed)."""

    headers: tuple[tuple[str, str], ...] = ()
    refusal: IngestError | None = None
    unavailable: bool = False

    def raise_if_refused(self) -> None:
        if self.refusal is not None:
            raise self.refusal


#: A storage outage under fail-open: nothing was counted, so nothing to report.
_UNCOUNTED = RateLimitDecision(unavailable=True)


@dataclass(frozen=True, slots=True)
class _Call:
    """A storage call the decision needs: ``limiter.<method>(item, key)``."""

    method: Literal["hit", "get_window_stats"]
    item: RateLimitItem


_Decide = Generator[_Call, Any, RateLimitDecision]


#: The storage schemes whose client calls ``storage_timeout`` bounds.
_TIMED_SCHEMES = ("redis", "rediss", "redis+unix")


def refused_credentials(error: StorageError) -> bool:
    """Whether a storage's error is its server refusing our credentials."""
    return _is_auth_error(error.storage_error)


def _is_auth_error(error: Exception) -> bool:
    """Whether a storage error is the server refusing our credentials (redis-py's
    AuthenticationError, coredis' AuthenticationFailureError, Redis' own
    WRONGPASS / NOAUTH replies), not an outage."""
    if "Authentication" in type(error).__name__:
        return True
    text = str(error)
    return text.startswith(("WRONGPASS", "NOAUTH")) or "invalid username-password" in text


def _check_storage(uri: str) -> None:
    """Fail at construction, not on the first request, for a storage URI whose
    scheme ``limits`` does not know or whose client library is not installed
    (either face: ``redis://`` needs redis-py for WSGI and coredis for ASGI)."""
    scheme = uri.partition("://")[0]
    for name in (scheme, f"async+{scheme}"):
        storage = SCHEMES.get(name)
        if storage is None:
            known = ", ".join(s for s in SCHEMES if not s.startswith("async+"))
            raise ValueError(f"unknown rate-limit storage scheme {scheme!r}; use one of {known}")
        # limits lists alternatives (redis-py or valkey, say): one is enough.
        needed = sorted({module.partition(".")[0] for module in getattr(storage, "DEPENDENCIES", ())})
        if needed and not any(importlib.util.find_spec(module) for module in needed):
            hint = " (pip install 'ingest-mw[redis]')" if "redis" in scheme else ""
            raise ValueError(f"rate-limit storage {scheme}:// needs one of {', '.join(needed)} installed{hint}")


class RateLimit:
    """A per-client request limit, counted in a ``limits`` storage.

    Every argument is keyword-only and checked here, so that a typo fails
    at start-up rather than on the first request. The storage itself is
    opened on first use: a server that forks workers after loading the app
    must not share one connection (or the in-memory storage's timer thread)
    across processes.
    """

    def __init__(
        self,
        *,
        # A limits string: "500/minute", "10/second;500/minute" (every one applies).
        limit: str,
        # "moving-window" counts exactly, with no burst at window edges, at the
        # cost of one stored timestamp per request; "fixed-window" is one counter
        # per window (cheapest, allows 2x at an edge); "sliding-window-counter"
        # is two counters weighted in between.
        strategy: str = "moving-window",
        # limits' own URI form: memory:// counts per process (per event loop on
        # the async face); redis://host:port/db, redis+sentinel://,
        # redis+cluster:// share one count between processes and hosts. The
        # async face uses the same URI with limits.aio's "async+" prefix.
        storage_uri: str = "memory://",
        # What to count by; default: the client IP (see trusted_proxies).
        key: KeyFunction | None = None,
        # Before the default key: a limit sharing its storage with another one
        # counts under keys of its own ("ui/" for the Live Tail page's).
        key_prefix: str = "",
        # CIDRs of the proxies whose X-Forwarded-For is believed (or a
        # TrustedProxies to read Forwarded instead); for the default key only.
        trusted_proxies: TrustedProxies | Iterable[str] = (),
        # Storage down: True accepts requests uncounted, False refuses with 503.
        fail_open: bool = True,
        # Seconds between two log warnings about the same outage.
        warn_interval: float = 60.0,
        # Seconds a storage call may take (to connect, then to answer) before
        # it counts as an outage and fail_open decides: a frozen Redis then
        # costs a request about half a second, not as long as it is frozen.
        # Applied to redis:// storages (both faces, retries off); None: the
        # client library's own (no timeout at all for redis-py and coredis).
        storage_timeout: float | None = 0.25,
    ) -> None:
        self.limit = limit
        self.items: tuple[RateLimitItem, ...] = tuple(parse_many(limit))
        # The storage calls _decide asks for, made once rather than per request.
        self._calls = tuple((_Call("hit", item), _Call("get_window_stats", item)) for item in self.items)
        if strategy not in STRATEGIES:
            known = ", ".join(STRATEGIES)
            raise ValueError(f"unknown rate-limit strategy {strategy!r}; use one of {known}")
        self.strategy = strategy
        self.storage_uri = storage_uri.removeprefix("async+")
        _check_storage(self.storage_uri)
        if key is not None and trusted_proxies:
            raise ValueError("trusted_proxies apply to the default key only; use them in your key function")
        if not isinstance(trusted_proxies, TrustedProxies):
            trusted_proxies = TrustedProxies(trusted_proxies)
        self.proxies = trusted_proxies
        if key is not None and key_prefix:
            raise ValueError("key_prefix applies to the default key only; put it in your key function")
        self.key_prefix = key_prefix
        self.key: KeyFunction = key or self._client_ip
        self.fail_open = fail_open
        self.warn_interval = warn_interval
        if storage_timeout is not None and not (
            isinstance(storage_timeout, (int, float)) and not isinstance(storage_timeout, bool) and storage_timeout > 0
        ):
            raise ValueError(f"storage_timeout = {storage_timeout!r}: give a positive number of seconds, or None")
        self.storage_timeout = storage_timeout
        self._limiter: RateLimiter | None = None
        self._async_limiters: dict[asyncio.AbstractEventLoop, AsyncRateLimiter] = {}
        self._lock = threading.Lock()
        self._quiet_until = -math.inf

    def _client_ip(self, request: Request) -> str:
        # The flow has read the forwarded chain for its admission already, with these proxies.
        client = request.forwarded_client or self.proxies.client_ip(request.client, request.headers)
        return self.key_prefix + (client or UNKNOWN_CLIENT)

    # --- the two I/O faces ---------------------------------------------------------
    def hit(self, request: Request) -> RateLimitDecision:
        """Count ``request`` with the sync storage (blocking; for WSGI and other sync code)."""
        key = self.key(request)
        decide = self._decide()
        try:
            limiter = self._sync_limiter()
            call = next(decide)
            while True:
                call = decide.send(getattr(limiter, call.method)(call.item, key))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        except StorageError as error:
            return self._unavailable(error)

    async def ahit(self, request: Request) -> RateLimitDecision:
        """Count ``request`` with the :mod:`limits.aio` storage (for ASGI)."""
        key = self.key(request)
        decide = self._decide()
        try:
            limiter = self._running_loop_limiter()
            call = next(decide)
            while True:
                call = decide.send(await getattr(limiter, call.method)(call.item, key))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        except StorageError as error:
            return self._unavailable(error)

    # --- reachability, for readiness probes (ingest_mw.health) ------------------------
    def check(self) -> bool:
        """Whether the sync storage answers (``limits``' own check: a ping for Redis)."""
        try:
            return bool(self._sync_limiter().storage.check())
        except Exception:  # an unreachable storage may raise rather than answer False
            return False

    async def acheck(self) -> bool:
        """Whether the :mod:`limits.aio` storage of the running event loop answers."""
        try:
            return bool(await self._running_loop_limiter().storage.check())
        except Exception:
            return False

    def _storage_options(self, face: Literal["sync", "async"]) -> dict[str, Any]:
        """The client options that bound each storage call by ``storage_timeout``
        (redis-py on the sync face, coredis on the async one), without retries:
        a retry would double the time a frozen server costs."""
        timeout = self.storage_timeout
        if timeout is None or self.storage_uri.partition("://")[0] not in _TIMED_SCHEMES:
            return {}
        if face == "sync":
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            return {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 0)}
        from coredis.retry import NoRetryPolicy

        return {"stream_timeout": timeout, "connect_timeout": timeout, "retry_policy": NoRetryPolicy()}

    def _sync_limiter(self) -> RateLimiter:
        if self._limiter is None:
            with self._lock:  # WSGI threads: one storage, not one per racing thread
                if self._limiter is None:
                    storage = storage_from_string(
                        self.storage_uri, wrap_exceptions=True, **self._storage_options("sync")
                    )
                    self._limiter = STRATEGIES[self.strategy](storage)
        return self._limiter

    def probe(self) -> None:
        """Reach the storage once, with the credentials of its URI (the storage
        of requests is opened apart, on first use): limits' ``StorageError``
        when it cannot (:func:`refused_credentials` tells a wrong password)."""
        storage = storage_from_string(self.storage_uri, wrap_exceptions=True, **self._storage_options("sync"))
        try:
            STRATEGIES[self.strategy](storage).get_window_stats(self.items[0], "ingest_mw:verify")
        finally:
            close = getattr(getattr(storage, "storage", None), "close", None)
            if close is not None:
                close()

    def verify(self) -> None:
        """:meth:`probe` for a start-up check: ``ValueError`` naming the URI
        (password masked) and the reason when the storage refuses the
        credentials or cannot be reached."""
        try:
            self.probe()
        except StorageError as error:
            what = "refused the credentials" if refused_credentials(error) else "cannot be reached"
            raise ValueError(f"rate-limit storage {masked(self.storage_uri)} {what}: {error.storage_error!r}") from None

    def _running_loop_limiter(self) -> AsyncRateLimiter:
        """The async storage of the running event loop, opened in it.

        A client's connections belong to the loop that opened them (a coredis
        client used from a second loop hangs), so each loop has its own;
        those of closed loops are dropped when a new loop first asks.
        """
        loop = asyncio.get_running_loop()
        limiter = self._async_limiters.get(loop)
        if limiter is None:
            live = {other: lim for other, lim in self._async_limiters.items() if not other.is_closed()}
            storage = storage_from_string(
                "async+" + self.storage_uri, wrap_exceptions=True, **self._storage_options("async")
            )
            # (limits.aio types its STRATEGIES with the abstract base class.)
            live[loop] = limiter = ASYNC_STRATEGIES[self.strategy](storage)  # type: ignore[abstract]
            self._async_limiters = live
        return limiter

    # --- the decision, once ----------------------------------------------------------
    def _decide(self) -> _Decide:
        """Hit each limit until one refuses, read every window, then decide.

        Limits after a refusing one are only read, not hit: a refused request
        should not use up the longer windows too. The reported window is the
        one with the fewest requests left, then the latest reset (see the
        module docs).
        """
        refused_by: RateLimitItem | None = None
        windows: list[tuple[RateLimitItem, WindowStats]] = []
        for hit, read in self._calls:
            item = hit.item
            if refused_by is None and not (yield hit):
                refused_by = item
            stats: WindowStats = yield read
            if item is refused_by:
                # The sliding-window counter rounds its weighted count down, so
                # it may say 1 left for the hit it has just refused.
                stats = stats._replace(remaining=0)
            windows.append((item, stats))
        item, stats = min(windows, key=lambda window: (window[1].remaining, -window[1].reset_time))
        # Whole seconds until strictly after the reset time: limits still counts
        # a hit at the very end of its window, so a retry exactly then would fail.
        reset = max(0, math.floor(stats.reset_time - time.time()) + 1)
        refusal = None
        if refused_by is not None:
            refusal = IngestError(429, "Too Many Requests", headers=[(RETRY_AFTER_HEADER, str(reset))])
        headers = (
            (LIMIT_HEADER, str(item.amount)),
            (REMAINING_HEADER, str(stats.remaining)),
            (RESET_HEADER, str(reset)),
        )
        return RateLimitDecision(headers, refusal)

    def _unavailable(self, error: StorageError) -> RateLimitDecision:
        """A storage outage: accept uncounted (fail open) or refuse with 503
        (fail closed) — never a 500 — and log it at most once per ``warn_interval``.
        A storage that refuses the credentials is no outage but a wrong
        configuration: refused with 503 whatever ``fail_open`` says, and
        logged as an error."""
        now = time.monotonic()
        with self._lock:
            warn = now >= self._quiet_until
            if warn:
                self._quiet_until = now + self.warn_interval
        if _is_auth_error(error.storage_error):
            if warn:
                logger.error(
                    "ingest_mw: rate-limit storage %s refused the credentials (%r): fix the URI; refusing"
                    " requests with 503 meanwhile (next line in %gs at the earliest)",
                    masked(self.storage_uri),
                    error.storage_error,
                    self.warn_interval,
                )
            return _REFUSED_UNAVAILABLE
        if warn:
            logger.warning(
                "ingest_mw: rate-limit storage %s unavailable (%r); %s (next warning in %gs at the earliest)",
                masked(self.storage_uri),
                error.storage_error,
                "accepting requests uncounted" if self.fail_open else "refusing requests with 503",
                self.warn_interval,
            )
        return _UNCOUNTED if self.fail_open else _REFUSED_UNAVAILABLE


#: A storage that cannot count: refused, with a Retry-After, under fail-closed,
#: and always when it refuses our credentials (never accepted uncounted), so
#: that clients keep their events and come back once it is up or the URI fixed.
_REFUSED_UNAVAILABLE = RateLimitDecision(
    refusal=IngestError(503, "Service Unavailable", headers=[(RETRY_AFTER_HEADER, str(UNAVAILABLE_RETRY_AFTER))]),
    unavailable=True,
)


@overload
def as_rate_limit(value: RateLimit | str) -> RateLimit: ...
@overload
def as_rate_limit(value: None) -> None: ...
def as_rate_limit(value: RateLimit | str | None) -> RateLimit | None:
    """An API's (or a middleware's) ``rate_limit=`` argument as a component.

    A limits string gets every other default (per client IP, in memory);
    ``None`` means no limit; a :class:`RateLimit` is used as it is, so that
    several apps can share one.
    """
    if value is None or isinstance(value, RateLimit):
        return value
    if isinstance(value, str):
        return RateLimit(limit=value)
    raise TypeError(f"rate_limit must be a RateLimit, a limits string or None, not {type(value).__name__}")
