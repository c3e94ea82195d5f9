"""The request flow shared by every ingest API, as a sans-I/O generator.

An API app (:mod:`ingest_mw.betterstack`, :mod:`ingest_mw.baselime`) is a
composition of components plus the response shapes of its contract. Its
:meth:`IngestAPI.handle` is a generator: it *yields* what it needs from the
outside world (the body, a rate-limit hit, storing a batch, decoding a body
too large for an event loop) and
*returns* the :class:`Response`. The WSGI and ASGI adapters only fulfil those
steps, synchronously or asynchronously, so every rule lives here once and
can be tested with plain values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from .auth import CredentialAuth
from .batch import Batch, Events
from .body import BodyLimit, BodyReader
from .codecs import CodecNegotiation, Decoded, Rescan
from .errors import IngestError
from .timestamps import EventTimes

if TYPE_CHECKING:  # ratelimit imports Request from here
    from .ratelimit import RateLimit

__all__ = [
    "CheckRateLimit",
    "Decode",
    "Flow",
    "IngestAPI",
    "OFFLOAD_BYTES",
    "RESCAN_OFFLOAD_BYTES",
    "ReadBody",
    "Request",
    "Response",
    "Routes",
    "Store",
]

logger = logging.getLogger("ingest_mw")


#: ``Request.params`` until the route's are known: shared, so read-only.
_NO_PARAMS: Mapping[str, str] = MappingProxyType({})


@dataclass(slots=True, init=False)
class Request:
    """A request as plain values. ``path`` is relative to the mount point and
    ``headers`` has lower-case names. ``received_at`` is now (aware, UTC)
    unless given. ``source`` and ``params`` are filled in by the flow as it
    learns them (a rate-limit key function may use them; ``source`` stays
    ``None`` when the credential was refused)."""

    method: str
    path: str
    headers: Mapping[str, str]
    client: str | None
    received_at: datetime
    source: str | None
    params: Mapping[str, str]

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
        self.received_at = datetime.now(timezone.utc) if received_at is None else received_at
        self.source = source
        self.params = params


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


#: A body up to this size is decoded inside the flow; a larger one is a
#: :class:`Decode` step, which the async driver runs in a worker thread. A fast
#: decode (orjson or msgpack in C, then a light pass per event) costs about
#: 0.1 s per MiB at worst (a MiB of empty objects), so a body up to 1 MiB, a
#: typical 1000-event batch included, is decoded on the event loop as a plain
#: orjson app would, without paying for a thread hop.
OFFLOAD_BYTES = 1024 * 1024
#: The same for a rescan (Baselime's element-by-element judging of a body that
#: did not parse): it costs up to ~1.5 microseconds a byte in Python, so only
#: a small one stays on the loop (a few milliseconds at most).
RESCAN_OFFLOAD_BYTES = 4 * 1024


# The steps are NamedTuples, not frozen dataclasses: as immutable, and made
# for every request at a fraction of the cost.
class ReadBody(NamedTuple):
    """Step: feed the body into ``reader`` chunk by chunk as it arrives, to its
    end, then send back ``None``. When ``reader.feed`` refuses a chunk (413),
    stop reading and throw its error back in."""

    reader: BodyReader


class CheckRateLimit(NamedTuple):
    """Step: hit ``rate_limit`` for ``request``; send back its decision."""

    rate_limit: RateLimit
    request: Request


class Store(NamedTuple):
    """Step: hand ``batch`` to the storage hook; throw its exception back in if it fails."""

    batch: Batch


class Decode(NamedTuple):
    """Step: run ``work`` (decoding a large body) and send back its
    :class:`~ingest_mw.codecs.Decoded` or :class:`Rescan`, or throw its
    exception back in. Pure CPU work that takes long enough to stall an event
    loop, so the async driver runs it in a worker thread (see
    :data:`OFFLOAD_BYTES`)."""

    work: Callable[[], Any]


Step = ReadBody | CheckRateLimit | Decode | Store
Flow = Generator[Step, Any, Response]

# A NamedTuple's constructor is a Python function; the two steps every request
# takes are built with tuple.__new__ at a fraction of its cost (as batch.Event).
_read_body: Callable[[tuple[BodyReader]], ReadBody] = partial(tuple.__new__, ReadBody)
_store: Callable[[tuple[Batch]], Store] = partial(tuple.__new__, Store)


class IngestAPI:
    """Base of the API apps: routing hooks plus the one request flow.

    Subclasses set :attr:`name`, implement :meth:`match`, :meth:`render` and
    :meth:`accepted`, and may add batch metadata in :meth:`metadata`.
    """

    name: ClassVar[str]
    allowed_methods: ClassVar[tuple[str, ...]] = ("POST",)

    def __init__(
        self,
        *,
        auth: CredentialAuth,
        body_limit: BodyLimit,
        codecs: CodecNegotiation,
        times: EventTimes,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.auth = auth
        self.body_limit = body_limit
        self.codecs = codecs
        self.times = times
        self.rate_limit = rate_limit
        self._allow = ", ".join(self.allowed_methods)

    # --- what each API defines -------------------------------------------------
    def match(self, path: str) -> Mapping[str, str] | IngestError | None:
        """Route ``path``: its parameters, an error for a malformed path of this
        API, or ``None`` when the path is not this API's at all."""
        raise NotImplementedError

    def render(self, error: IngestError) -> Response:
        raise NotImplementedError

    def accepted(self, decoded: Decoded) -> Response:
        """The response once the valid events are stored."""
        raise NotImplementedError

    def metadata(self, request: Request) -> dict[str, str | None]:
        """Extra :class:`Batch` fields (Baselime's dataset, service, namespace)."""
        return {}

    # --- the flow ----------------------------------------------------------------
    def handle(self, request: Request, route: Mapping[str, str] | IngestError) -> Flow:
        """Serve one request that :meth:`match` gave ``route`` for."""
        # One generator, not a wrapper delegating to the flow: every step would
        # pass through two frames, on every request.
        headers_added: tuple[tuple[str, str], ...] = ()  # the rate limit's, on every answer
        try:
            if request.method not in self.allowed_methods:
                raise IngestError(405, "Method Not Allowed", headers=[("Allow", self._allow)])
            if isinstance(route, IngestError):
                raise route
            request.params = route
            headers = request.headers
            try:
                request.source = self.auth.authenticate(headers)
                refused = None
            except IngestError as error:
                # A refused credential still counts against the client's limit, so
                # guessing tokens is throttled like any other request.
                refused = error
            if self.rate_limit is not None:
                decision = yield CheckRateLimit(self.rate_limit, request)
                headers_added = tuple(decision.headers)
                decision.raise_if_refused()
            if refused is not None:
                raise refused
            codec = self.codecs.negotiate(headers.get("content-type"))
            self.body_limit.check_length(headers.get("content-length"))
            reader = self.body_limit.reader(headers.get("content-encoding"))
            yield _read_body((reader,))
            body = reader.finish()
            if len(body) > OFFLOAD_BYTES:
                decoded = yield Decode(partial(codec.decode, body))
            else:
                decoded = codec.decode(body)
            if isinstance(decoded, Rescan):
                decoded = (yield Decode(decoded.work)) if len(body) > RESCAN_OFFLOAD_BYTES else decoded.work()
            if decoded.events:
                # Cheap whatever the size: the events' times are decided only when a hook asks.
                batch = self._batch(request, decoded)
                try:
                    yield _store((batch,))
                except Exception:
                    logger.exception(
                        "ingest_mw: storage hook failed; %d %s events from source %r not acknowledged",
                        len(batch.events),
                        self.name,
                        batch.source,
                    )
                    raise IngestError(500, "Internal Server Error") from None
            response = self.accepted(decoded)
        except IngestError as error:
            response = self.render(error)
        except Exception:
            logger.exception("ingest_mw: %s request failed", self.name)
            response = self.render(IngestError(500, "Internal Server Error"))
        if headers_added:
            response = Response(response.status, response.headers + headers_added, response.body)
        return response

    def _batch(self, request: Request, decoded: Decoded) -> Batch:
        received_at = request.received_at
        assert request.source is not None
        # Positional: a keyword call costs a third more, on every request.
        return Batch(
            self.name,
            request.source,
            received_at,
            Events(decoded.events, self.times, received_at),
            request.client,
            **self.metadata(request),
        )


class Routes:
    """Several APIs under one mount point; the first whose :meth:`~IngestAPI.match` claims a path serves it."""

    def __init__(self, apis: IngestAPI | Sequence[IngestAPI]) -> None:
        self.apis: tuple[IngestAPI, ...] = (apis,) if isinstance(apis, IngestAPI) else tuple(apis)
        if not self.apis:
            raise ValueError("at least one ingest API is needed")

    def find(self, path: str) -> tuple[IngestAPI, Mapping[str, str] | IngestError] | None:
        for api in self.apis:
            route = api.match(path)
            if route is not None:
                return api, route
        return None
