"""The request flow shared by every ingest API, its I/O left to the adapter.

An API app (:mod:`ingest_mw.betterstack`, :mod:`ingest_mw.baselime`) is a
composition of components plus the response shapes of its contract. Its
:meth:`IngestAPI.handle` is the one request flow: every check, in its order,
and every response. What it needs from the outside world (the body, a
rate-limit hit, storing a batch, decoding a body too large for an event loop
in a worker thread) it asks of a :class:`RequestIO` that the adapter passes
in, and awaits. The flow itself does no I/O: the WSGI adapter's
:class:`~ingest_mw.drive.SyncIO` does the same work synchronously and never
suspends, so the sync adapters run the same flow to its end in one step
(:func:`~ingest_mw.drive.run_sync`), and a test runs it with plain bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from time import perf_counter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from .admission import FREE_BODY_BYTES, Admission, Wakeup, shared
from .auth import CredentialAuth
from .batch import Batch, Events
from .body import BodyLimit, framing_conflict
from .codecs import Codec, CodecNegotiation, Decoded, Rescan
from .errors import IngestError
from .eventcaps import EventCaps
from .observe import CLIENT_GONE, Observer, observe, refusal_reasons
from .sinks.base import BatchRefused, SinkUnavailable
from .timestamps import EventTimes

if TYPE_CHECKING:  # ratelimit imports Request from here
    from .counts import Tally
    from .ratelimit import RateLimit, RateLimitDecision

__all__ = [
    "BodyTimeout",
    "ClientDisconnected",
    "Feed",
    "Flow",
    "IngestAPI",
    "OFFLOAD_BYTES",
    "RESCAN_OFFLOAD_BYTES",
    "Request",
    "RequestIO",
    "Response",
    "Routes",
]

logger = logging.getLogger("ingest_mw")


#: ``Request.params`` until the route's are known: shared, so read-only.
_NO_PARAMS: Mapping[str, str] = MappingProxyType({})


@dataclass(slots=True, init=False)
class Request:
    """A request as plain values. ``path`` is relative to the mount point and
    ``headers`` has lower-case names. ``received_at`` is now (aware, UTC)
    unless given. ``source``, ``params`` and ``forwarded_client`` are filled
    in by the flow as it learns them (a rate-limit key function may use
    them; ``source`` stays ``None`` when the credential was refused;
    ``forwarded_client`` is the client the trusted proxies name, when there
    are any)."""

    method: str
    path: str
    headers: Mapping[str, str]
    client: str | None
    received_at: datetime
    source: str | None
    params: Mapping[str, str]
    forwarded_client: str | None

    # Written out, not generated with a default_factory: one Python call fewer
    # on every request. ``datetime.now`` is looked up in this module when
    # called, so a host's tests that freeze time (freezegun) freeze it here too.
    def __init__(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        client: str | None = None,
        received_at: datetime | None = None,
        source: str | None = None,
        params: Mapping[str, str] = _NO_PARAMS,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.client = client
        self.received_at = datetime.now(UTC) if received_at is None else received_at
        self.source = source
        self.params = params
        self.forwarded_client = None


@dataclass(frozen=True, slots=True)
class Response:
    """An answer as plain values. ``close``: the connection is to be closed
    after it (a request refused while its body may still be coming: the
    server must not read the rest); each adapter tells its server so."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    close: bool = False


#: A body up to this size is decoded inside the flow; a larger one is decoded
#: through :meth:`RequestIO.offload`, in a worker thread under ASGI. A fast
#: decode (orjson or msgpack in C, then a light pass per event) costs about
#: 0.1 s per MiB at worst (a MiB of empty objects), so a body up to 1 MiB, a
#: typical 1000-event batch included, is decoded on the event loop as a plain
#: orjson app would, without paying for a thread hop.
OFFLOAD_BYTES = 1024 * 1024
#: The same for a rescan (Baselime's element-by-element judging of a body that
#: did not parse): it costs up to ~1.5 microseconds a byte in Python, so only
#: a small one stays on the loop (a few milliseconds at most).
RESCAN_OFFLOAD_BYTES = 4 * 1024


class ClientDisconnected(Exception):
    """The client went away before its whole body was read: raised by
    :meth:`RequestIO.read_body`, it ends the flow (there is nobody to answer)."""


class BodyTimeout(Exception):
    """The body sent nothing for the admission's ``body_idle_timeout``:
    raised by :meth:`RequestIO.read_body`, answered 408 (and the connection
    closed)."""


#: Where an adapter puts each chunk of the body (a :class:`~ingest_mw.body.BodyReader`'s
#: ``feed``: it raises the 413 the moment the body passes its limit).
Feed = Callable[[bytes], None]

_T = TypeVar("_T")


class RequestIO(Protocol):
    """The I/O of one request, done by the adapter for :meth:`IngestAPI.handle`.

    An exception raised by any of these (a body over the limit, a storage
    hook that fails, a rate-limit storage that cannot be reached, a body that
    does not decode) is the flow's to answer, as the API's own response (a
    500, logged, for what it did not expect); only :class:`ClientDisconnected`
    raised by :meth:`read_body` ends the flow without a response.
    """

    async def read_body(self, feed: Feed) -> None:
        """Read the request body to its end into ``feed``, chunk by chunk as it
        arrives, stopping when ``feed`` refuses one (413); or raise
        :class:`ClientDisconnected` when the client has gone, or
        :class:`BodyTimeout` when it sent nothing for the API's
        ``admission.body_idle_timeout`` (where the adapter can time out a read)."""
        ...

    def wakeup(self) -> Wakeup:
        """A new alarm for this request to wait on without holding up other
        requests (a request waiting in line for a storage or decode slot of
        the admission): :class:`~ingest_mw.drive.LoopWakeup` on an event loop,
        :class:`~ingest_mw.drive.ThreadWakeup` in a request's own thread."""
        ...

    async def hit(self, rate_limit: RateLimit, request: Request) -> RateLimitDecision:
        """Hit ``rate_limit`` for ``request`` (``RateLimit.hit`` or ``ahit``)."""
        ...

    async def offload(self, work: Callable[[], _T]) -> _T:
        """Run ``work``, pure CPU work (decoding a large body) that takes long
        enough to stall an event loop: async adapters run it in a worker thread."""
        ...

    def store(self, batch: Batch) -> Awaitable[Any]:
        """Hand ``batch`` to the storage hook (awaited)."""
        ...


Flow = Coroutine[Any, Any, Response]


class IngestAPI:
    """Base of the API apps: routing hooks plus the one request flow.

    Subclasses set :attr:`name`, implement :meth:`match`, :meth:`render` and
    :meth:`accepted`, and may add batch fields in :meth:`batch`.
    """

    name: ClassVar[str]
    #: The API's name and its path below the mount, for the 404 of a path no API claims.
    title: ClassVar[str]
    path_pattern: str  # a class attribute, or set per instance by an API whose path is configurable
    allowed_methods: ClassVar[tuple[str, ...]] = ("POST",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "metadata" in vars(cls):  # the hook of earlier builds: it would now be ignored, silently
            raise TypeError(f"{cls.__name__}.metadata() is no longer called: override batch() instead")

    def __init__(
        self,
        *,
        auth: CredentialAuth,
        body_limit: BodyLimit,
        codecs: CodecNegotiation,
        times: EventTimes,
        rate_limit: RateLimit | None = None,
        # How many events a request may hold, how deep (the codecs' caps too).
        caps: EventCaps | None = None,
        # The process-wide limits (ingest_mw.admission); default: the process's shared one.
        admission: Admission | None = None,
    ) -> None:
        self.auth = auth
        self.body_limit = body_limit
        self.codecs = codecs
        self.times = times
        self.rate_limit = rate_limit
        self.caps = caps or EventCaps()
        self.admission = admission or shared()
        # Whose requests count as one client's for the admission: the rate
        # limit's trusted proxies' reading of X-Forwarded-For, else the peer.
        self._proxies = rate_limit.proxies if rate_limit is not None and rate_limit.proxies.networks else None
        self._allow = ", ".join(self.allowed_methods)

    # --- what each API defines -------------------------------------------------
    def match(self, path: str) -> Mapping[str, str] | IngestError | None:
        """Route ``path``: its parameters, an error for a malformed path of this
        API, or ``None`` when the path is not this API's at all."""
        raise NotImplementedError

    def unclaimed(self, path: str) -> IngestError | None:
        """The answer to ``path``, which :meth:`match` does not claim, when
        this API is alone under its mount (every path there is then its own,
        as on the contract's own host), or ``None`` for the mount's 404."""
        return None

    def render(self, error: IngestError, request: Request) -> Response:
        """The response to ``error``; ``request`` for an API whose answers follow
        the request (OTLP answers in the request's encoding)."""
        raise NotImplementedError

    def accepted(self, decoded: Decoded, request: Request) -> Response:
        """The response once the valid events are stored."""
        raise NotImplementedError

    def batch(self, request: Request, decoded: Decoded) -> Batch:
        """The :class:`Batch` of an accepted request's events. An API with
        fields of its own (Baselime's dataset, service, namespace) sets them
        on the batch this one makes."""
        received_at = request.received_at
        assert request.source is not None
        # Positional: cheaper than keywords, on every request.
        return Batch(
            self.name,
            request.source,
            received_at,
            Events(decoded.events, self.times, received_at),
            request.client,
        )

    # --- the flow ----------------------------------------------------------------
    async def handle(
        self,
        request: Request,
        route: Mapping[str, str] | IngestError,
        io: RequestIO,
        observer: Observer | None = None,
    ) -> Response:
        """Serve one request that :meth:`match` gave ``route`` for, with the
        adapter's ``io``; :class:`ClientDisconnected` from ``io.read_body``
        propagates. ``observer`` is told the request's facts
        (:mod:`ingest_mw.observe`); without one, ``seen`` stays ``None`` and
        each report below costs one test."""
        headers_added: tuple[tuple[str, str], ...] = ()  # the rate limit's, on every answer
        reading = False  # whether a ClientDisconnected is the client's going
        decoded: Decoded | Rescan | None = None
        # Observing: counting into the observer's tallies, and an Observation
        # for the hooks it is told (either, both or neither).
        tally = seen = None
        if observer is not None:
            try:
                tallies = observer.tallies
                tells = observer.tells_finished or observer.tells_started or observer.tells_received
            except AttributeError:  # duck-typed, of no Observer subclass: told every hook
                tallies, tells = getattr(observer, "tallies", None), True
            if tallies is not None:
                tally = tallies.here(self.name)
                started = perf_counter()
            if tells:
                seen = observe(self.name, request, observer)
        observed = tally is not None or seen is not None
        body_size = wire_size = stored = 0
        storage_seconds: float | None = None
        # --- admission (ingest_mw.admission): a request slot, the body's bytes ---
        admission = self.admission
        admitted = admission.requests.take()
        client = ""
        client_slots: list[None] | None = None  # its requests in flight (Admission.enter_client)
        taken = 0  # this body's bytes in the shared budget
        reader = None
        headers = request.headers
        content_length = headers.get("content-length")
        # Until the body is read, bytes may still be coming: a refusal closes the connection.
        chunked = "transfer-encoding" in headers
        body_unread = chunked or bool(content_length and content_length != "0")
        try:
            if not admitted:
                raise admission.overloaded()
            proxies = self._proxies
            if proxies is None:
                client = request.client or "unknown"
            else:  # read once: the rate limit's key reads it from the request too
                client = request.forwarded_client = proxies.client_ip(request.client, headers) or "unknown"
            client_slots = admission.enter_client(client)
            # --- end of admission's part -----------------------------------------
            if chunked and content_length is not None:
                raise framing_conflict()
            if request.method not in self.allowed_methods:
                raise IngestError(405, "Method Not Allowed", headers=[("Allow", self._allow)])
            if isinstance(route, IngestError):
                raise route
            request.params = route
            try:
                request.source = self.auth.authenticate(headers)
                refused = None
            except IngestError as error:
                # A refused credential still counts against the client's limit, so
                # guessing tokens is throttled like any other request.
                refused = error
            if self.rate_limit is not None:
                decision = await io.hit(self.rate_limit, request)
                if observed and (decision.refusal is not None or decision.unavailable):
                    if tally is not None:
                        tally.rate_limit(decision)
                    if seen is not None:
                        seen.rate_limit(decision)
                headers_added = tuple(decision.headers)
                decision.raise_if_refused()
            if refused is not None:
                raise refused
            codec = self.codecs.negotiate(headers.get("content-type"))
            declared = self.body_limit.check_length(content_length)
            if declared and declared > FREE_BODY_BYTES:
                taken = admission.reserve(declared)  # 503 before a byte of it is read
            encoding = headers.get("content-encoding")
            reader = self.body_limit.reader(encoding, admission, taken)
            reading = True
            await io.read_body(reader.feed)
            reading = body_unread = False
            body = reader.finish()
            body_size = len(body)
            if observed:
                wire_size = reader.wire_bytes if encoding else body_size
                if seen is not None:
                    seen.body_bytes = body_size
                    seen.wire_bytes = wire_size
                    if seen.tells_received:
                        seen.tell_received()
            if body_size > OFFLOAD_BYTES:
                decoded = await self._offload(io, partial(self._decode, codec, body))
            else:
                decoded = self._decode(codec, body)
            if isinstance(decoded, Rescan):
                work = partial(self._rescan, decoded, body_size)
                decoded = await self._offload(io, work) if body_size > RESCAN_OFFLOAD_BYTES else work()
            if decoded.events:
                # Cheap whatever the size: the events' times are decided only when a hook asks.
                batch = self.batch(request, decoded)
                if not admission.stores.take():
                    await admission.enter_storage(io.wakeup)  # or 503: the hook never sees the batch
                if observed:
                    storing_at = perf_counter()  # the hook's own time, not the wait to reach it
                try:
                    await io.store(batch)
                except Exception as failure:
                    if observed:
                        storage_seconds = perf_counter() - storing_at
                        if tally is not None:
                            tally.store_failed(len(batch.events))
                        if seen is not None:
                            seen.store_failed(len(batch.events), storage_seconds)
                    lost = f"{len(batch.events)} {self.name} events from source {batch.source!r} not acknowledged"
                    # A SinkUnavailable's one line says where and why, with no
                    # secret in it: no traceback for it.
                    if isinstance(failure, BatchRefused):  # its own values: sent again, refused again
                        logger.error("ingest_mw: %s; %s", failure, lost)
                        refusal = IngestError(500, "Internal Server Error")
                    elif isinstance(failure, SinkUnavailable):
                        # The storage cannot store now (a disk full, a database
                        # down): the 503 that shippers retry after Retry-After,
                        # logged as the admission logs its refusals, a line per interval.
                        refusal = admission.unavailable("storage_outage", f"{failure}; {lost}")
                    else:
                        logger.error("ingest_mw: storage hook failed; %s", lost, exc_info=True)
                        refusal = IngestError(500, "Internal Server Error")
                    failure.__traceback__ = None  # logged; its frames hold the batch (see _offload)
                    raise refusal from None
                finally:
                    admission.stores.give()
                if observed:
                    storage_seconds = perf_counter() - storing_at
                    stored = len(decoded.events)
                    if seen is not None:
                        seen.storage_seconds = storage_seconds
                        seen.events_accepted = stored
            response = self.accepted(decoded, request)
        except IngestError as error:
            response = self.render(error, request)
        except Exception as exc:
            if reading and isinstance(exc, ClientDisconnected):
                if tally is not None:  # the body was not read to its end
                    tally.count(CLIENT_GONE, perf_counter() - started, 0, 0, 0, None)
                if seen is not None:
                    seen.finish(CLIENT_GONE, decoded)
                raise  # nobody left to answer
            if reading and isinstance(exc, BodyTimeout):
                response = self.render(self._body_timeout(), request)
            else:
                logger.exception("ingest_mw: %s request failed", self.name)
                response = self.render(IngestError(500, "Internal Server Error"), request)
        except BaseException:  # cancelled (the server gave up on it): still finished, for in-flight gauges
            if tally is not None:
                tally.count(CLIENT_GONE, perf_counter() - started, body_size, wire_size, stored, storage_seconds)
                self._count_refused(tally, decoded)
            if seen is not None:
                seen.finish(CLIENT_GONE, decoded)
            raise
        finally:
            # --- admission: give back what this request held ---
            if admitted:
                admission.requests.give()
            if client_slots is not None:
                admission.leave_client(client, client_slots)
            if reader is not None:
                taken = reader.taken
            if taken:
                admission.release(taken)
        if body_unread or headers_added:
            close = response.close or body_unread
            response = Response(response.status, response.headers + headers_added, response.body, close)
        if tally is not None:
            tally.count(response.status, perf_counter() - started, body_size, wire_size, stored, storage_seconds)
            if decoded is not None and not isinstance(decoded, Rescan) and decoded.invalid:
                self._count_refused(tally, decoded)
        if seen is not None:
            seen.finish(response.status, decoded)
        return response

    @staticmethod
    def _count_refused(tally: Tally, decoded: Decoded | Rescan | None) -> None:
        """Count the elements the codec refused into ``tally``."""
        for reason in refusal_reasons(decoded):
            tally.refuse(reason, 1)

    # --- the flow's steps off the event loop (admission's bounded parallelism) ---
    async def _offload(self, io: RequestIO, work: Callable[[], _T]) -> _T:
        """Run ``work`` through ``io.offload`` in one of the admission's decode slots."""
        admission = self.admission
        if not admission.decodes.take():
            await admission.enter_decode(io.wakeup)
        try:
            return await io.offload(work)
        except IngestError as error:
            # Raised in a worker thread, it comes back through the executor's
            # future, which its traceback holds in a cycle with the frames that
            # hold the body: freed only by the cyclic GC, which a server runs
            # seldom. The refusal needs none of those frames.
            raise error.with_traceback(None) from None
        finally:
            admission.decodes.give()

    def _decode(self, codec: Codec, body: bytes) -> Decoded | Rescan:
        """Decode ``body`` and check what it holds against the caps."""
        decoded = codec.decode(body)
        if not isinstance(decoded, Rescan):
            self.caps.check(decoded.events, len(body), plain=decoded.plain, nests_at_most=decoded.nests_at_most)
        return decoded

    def _rescan(self, rescan: Rescan, body_size: int) -> Decoded:
        decoded = rescan.work()
        self.caps.check(decoded.events, body_size, plain=decoded.plain, nests_at_most=decoded.nests_at_most)
        return decoded

    def _body_timeout(self) -> IngestError:
        self.admission.log.refused("body_timeout", "a request body sent nothing for body_idle_timeout: 408")
        return IngestError(
            408, f"the request body sent nothing for {self.admission.body_idle_timeout:g}s: send it without pauses"
        )


class Routes:
    """Several APIs under one mount point; the first whose :meth:`~IngestAPI.match` claims a path serves it."""

    def __init__(self, apis: IngestAPI | Sequence[IngestAPI]) -> None:
        self.apis: tuple[IngestAPI, ...] = (apis,) if isinstance(apis, IngestAPI) else tuple(apis)
        if not self.apis:
            raise ValueError("at least one ingest API is needed")
        # An API alone under the mount answers every path (IngestAPI.unclaimed).
        self._alone = self.apis[0] if len(self.apis) == 1 else None

    def find(self, path: str) -> tuple[IngestAPI, Mapping[str, str] | IngestError] | None:
        for api in self.apis:
            route = api.match(path)
            if route is not None:
                return api, route
        alone = self._alone
        if alone is not None:
            error = alone.unclaimed(path)
            if error is not None:
                return alone, error
        return None

    def not_found(self, mount: str, path: str) -> str:
        """What a client that posted to ``path``, a path no API claims, is told:
        the routes that exist below ``mount`` (the mount point's own path)."""
        mount = mount.rstrip("/")
        routes = ", ".join(f"{api.allowed_methods[0]} {mount}{api.path_pattern} ({api.title})" for api in self.apis)
        return f"Not Found: no ingest API at {mount}{path or '/'}; the routes here are {routes}"
