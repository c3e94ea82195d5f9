"""What one request did, told to whoever observes the adapters: the observer hook.

:meth:`~ingest_mw.api.IngestAPI.handle`, the one request flow, fills an
:class:`Observation` as it goes and hands it to the :class:`Observer` the
adapter was given (``observer=`` on :class:`~ingest_mw.ASGIApp`,
:class:`~ingest_mw.ASGIMiddleware`, :class:`~ingest_mw.WSGIApp`,
:class:`~ingest_mw.WSGIMiddleware`, the ``OBSERVER`` setting of the Django
and Flask glue). Three hooks per request: :meth:`Observer.started` when
the flow begins, :meth:`Observer.received` once the body is read, and
:meth:`Observer.finished` once the answer is decided (or the client gone);
the flow calls only the ones the observer's class overrides (most need only
``finished``). An observer that needs totals rather than each request
counts instead (:attr:`Observer.tallies`, :mod:`ingest_mw.counts`): the flow
adds the request's facts to its numbers itself, with no observation made.
Metrics (:class:`ingest_mw.metrics.PrometheusObserver`, which counts) and the
access log (:class:`ingest_mw.logs.AccessLogObserver`) are observers; a host
writes its own by subclassing :class:`Observer` and overriding what it needs::

    class Shipped(Observer):
        def finished(self, seen: Observation, token: object) -> None:
            statsd.incr(f"ingest.{seen.api}.{seen.status}")

    app = ASGIApp(apis, sink=sink, observer=Observers(PrometheusObserver(), Shipped()))

An observation never holds a credential, a body or a query string: the
source *name* the credential stands for, sizes and counts. Observers run in
the request's own thread or event loop, between the answer being decided
and it being sent: they must be quick and must not raise (an exception
from one is logged and the request is answered all the same).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from time import perf_counter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .codecs import INVALID_KINDS

if TYPE_CHECKING:
    from .api import IngestAPI, Request
    from .counts import Tallies
    from .ratelimit import RateLimitDecision

__all__ = [
    "CLIENT_GONE",
    "EVENT_REFUSAL_REASONS",
    "Observation",
    "Observer",
    "Observers",
    "as_observer",
    "one_observer",
    "observe",
    "refusal_reason",
]

logger = logging.getLogger("ingest_mw")

#: The status an observation records for a client that left before its
#: answer (nginx's 499 "client closed request": no response was sent).
CLIENT_GONE = 499

#: Why events were refused, as metric labels: a fixed set, whatever clients send.
#: The codecs' kinds (:data:`~ingest_mw.codecs.INVALID_KINDS`: ``too_large``,
#: ``invalid_json``, ``not_an_object``, ``invalid``) are elements a codec
#: refused while it kept their neighbours (Baselime's partial acceptance,
#: OTLP's partial success); ``storage_error`` is every event of a batch the
#: storage hook failed to store.
EVENT_REFUSAL_REASONS = (*INVALID_KINDS, "storage_error")


def _failed(hook: Callable[..., Any]) -> None:
    """Log what an observer hook raised (from its ``except``): never the request's problem."""
    logger.exception("ingest_mw: observer hook %r failed", hook)


def refusal_reason(element: Any) -> str:
    """The label (one of :data:`EVENT_REFUSAL_REASONS`) of an element a codec
    refused: its :attr:`~ingest_mw.codecs.InvalidEvent.kind` (``invalid`` for
    a host's codec that gives plain pairs)."""
    kind = getattr(element, "kind", "invalid")
    return kind if kind in INVALID_KINDS else "invalid"


def refusal_reasons(decoded: Any) -> Iterable[str]:
    """The reason of each element the codec refused, if ``decoded`` (a
    :class:`~ingest_mw.codecs.Decoded`, or ``None`` or a rescan never run)
    has any."""
    invalid = getattr(decoded, "invalid", None)
    return map(refusal_reason, invalid) if invalid else ()


_NOTHING_REFUSED: Mapping[str, int] = MappingProxyType({})


class Observation:
    """The facts of one request to an ingest API, as the flow learns them
    (made by the flow with :func:`observe`).

    ``api`` is the API's name; ``method``, ``path`` (relative to the mount,
    never a query string) and ``client`` (the peer address) are the
    request's; ``source`` is the name of the credential that authenticated
    it (``None`` when refused). ``status`` is the answer's
    (:data:`CLIENT_GONE` when the client left first). ``events_accepted``
    counts the events stored, ``events_refused`` the ones refused while the
    request was served (an element a codec refused, a batch the storage
    hook failed to store), by reason in ``refused``; a request refused as a
    whole (403, 413, a body that does not parse) refuses no counted event:
    its status says why. ``wire_bytes`` is the body as sent, ``body_bytes``
    after Content-Encoding (both 0 until the whole body is read);
    ``storage_seconds`` the time in the storage hook (``None`` if it was not
    called), ``duration_seconds`` the whole flow's. ``rate_limited`` says
    the rate limit refused the request; ``rate_limit_unavailable`` that its
    storage could not be reached; ``storage_failed`` that the hook raised;
    ``unusual`` that any of these three or a refused event happened (one
    test for an observer's common case). ``token`` is what the observer's
    :meth:`~Observer.started` returned.
    """

    # Set by observe() on every request:
    api: str
    request: Request
    observer: Observer
    started_at: float
    # Class attributes until the flow learns otherwise: a request writes only
    # what it learns (no slots: setting them all, or a Python __init__, cost
    # a request more than reading these defaults from the class does).
    token: Any = None
    status = 0
    events_accepted = 0
    events_refused = 0
    refused: Mapping[str, int] = _NOTHING_REFUSED
    wire_bytes = 0
    body_bytes = 0
    storage_seconds: float | None = None
    duration_seconds = 0.0
    rate_limited = False
    rate_limit_unavailable = False
    storage_failed = False
    unusual = False
    #: Whether the flow tells the observer's ``received`` and ``finished``
    #: (see :attr:`Observer.tells_received`).
    tells_received = False
    tells_finished = False

    # --- the request's own facts ---------------------------------------------------------
    @property
    def method(self) -> str:
        return self.request.method

    @property
    def path(self) -> str:
        return self.request.path.partition("?")[0]  # a server that left a query in: never kept

    @property
    def client(self) -> str | None:
        return self.request.client

    @property
    def source(self) -> str | None:
        return self.request.source

    # --- what the flow reports, in its order (it also sets wire_bytes,
    # body_bytes, storage_seconds and events_accepted itself: a call fewer
    # for each, on every request) ---------------------------------------------------------
    def rate_limit(self, decision: RateLimitDecision) -> None:
        """The rate limit refused the request, or its storage was unavailable."""
        if decision.unavailable:
            self.rate_limit_unavailable = True
        else:
            self.rate_limited = decision.refusal is not None
        self.unusual = True

    def tell_received(self) -> None:
        """The body is read (``wire_bytes`` and ``body_bytes`` set): tell the observer."""
        try:
            self.observer.received(self, self.token)
        except Exception:
            _failed(self.observer.received)

    def store_failed(self, events: int, seconds: float) -> None:
        """The storage hook raised after ``seconds``, ``events`` not stored."""
        self.storage_seconds = seconds
        self.storage_failed = True
        self._refuse("storage_error", events)

    def finish(self, status: int, decoded: Any = None) -> None:
        """The answer is decided (``status``); ``decoded``, if the body was decoded,
        gives the elements the codec refused."""
        self.duration_seconds = perf_counter() - self.started_at
        self.status = status
        for reason in refusal_reasons(decoded):
            self._refuse(reason, 1)
        if self.tells_finished:
            try:
                self.observer.finished(self, self.token)
            except Exception:
                _failed(self.observer.finished)

    def _refuse(self, reason: str, events: int) -> None:
        refused = dict(self.refused)  # only when something is refused: no dict otherwise
        refused[reason] = refused.get(reason, 0) + events
        self.refused = refused
        self.events_refused += events
        self.unusual = True

    def as_dict(self) -> dict[str, Any]:
        """The facts as plain values (what a test or a host's own log reads)."""
        return {
            "api": self.api,
            "method": self.method,
            "path": self.path,
            "client": self.client,
            "source": self.source,
            "status": self.status,
            "events_accepted": self.events_accepted,
            "events_refused": self.events_refused,
            "refused": dict(self.refused),
            "wire_bytes": self.wire_bytes,
            "body_bytes": self.body_bytes,
            "storage_seconds": self.storage_seconds,
            "duration_seconds": self.duration_seconds,
            "rate_limited": self.rate_limited,
            "rate_limit_unavailable": self.rate_limit_unavailable,
            "storage_failed": self.storage_failed,
        }

    def __repr__(self) -> str:
        return f"Observation({self.api!r}, {self.method} {self.path!r}, status={self.status})"


def one_observer(observers: Sequence[Observer]) -> Observer | None:
    """Several observers as the one an adapter takes: ``None`` for none, the
    observer itself for one, :class:`Observers` for more."""
    if not observers:
        return None
    return observers[0] if len(observers) == 1 else Observers(*observers)


def as_observer(observer: Observer | None, apis: Sequence[IngestAPI] = ()) -> Observer | None:
    """``observer`` as the flow takes it, told that it ``observes`` ``apis``: an
    :class:`Observer`, or one that is duck-typed (``started``, ``received``
    and ``finished``, no base class) inside :class:`Observers`, which tells
    it every hook. For the adapters, once, when they are given one."""
    if observer is None:
        return None
    if not isinstance(observer, Observer):
        observer = Observers(observer)
    observer.observes(apis)
    return observer


def observe(api: str, request: Request, observer: Observer) -> Observation:
    """Start observing ``request`` to ``api``: its :class:`Observation`, told to ``observer``."""
    seen = Observation()
    seen.api = api
    seen.request = request
    seen.observer = observer
    seen.started_at = perf_counter()
    # An observer of no Observer subclass has every hook: it is told them all.
    if getattr(observer, "tells_received", True):
        seen.tells_received = True
    if getattr(observer, "tells_finished", True):
        seen.tells_finished = True
    if getattr(observer, "tells_started", True):
        try:
            seen.token = observer.started(seen)
        except Exception:
            _failed(observer.started)
    return seen


def count_observation(tallies: Tallies, seen: Observation) -> None:
    """Add what ``seen`` holds to ``tallies``, as the flow adds a request's
    facts itself (for an observer that counts but is told, inside :class:`Observers`)."""
    tally = tallies.here(seen.api)
    tally.count(
        seen.status, seen.duration_seconds, seen.body_bytes, seen.wire_bytes, seen.events_accepted, seen.storage_seconds
    )
    if seen.unusual:
        for reason, events in seen.refused.items():
            tally.refuse(reason, events)
        if seen.storage_failed:
            tally.storage_errors += 1
        if seen.rate_limited:
            tally.rate_limited += 1
        if seen.rate_limit_unavailable:
            tally.rate_limit_storage_errors += 1


#: Each ``tells_*`` flag with the hook it says the flow calls.
_TELLS = (("tells_started", "started"), ("tells_received", "received"), ("tells_finished", "finished"))


class Observer:
    """Told about every request of the adapter it is given to; every hook does
    nothing here, so a subclass overrides only what it needs.

    ``started`` runs as the flow begins (nothing known yet but the API and
    the request line); what it returns is handed back to the other two as
    ``token`` (per-request state of the observer's own: a start time, a
    span), and is ``seen.token``.
    ``received`` runs once the body is read (``wire_bytes``,
    ``body_bytes``); ``finished`` once the answer is decided, with every fact
    filled in. ``finished`` is called exactly once for every request
    (``started`` or not) of an observer that overrides it, also for a
    client that left (status :data:`CLIENT_GONE`). A hook this class's is
    not overridden by a subclass is not called at all (``tells_started``,
    ``tells_received``, ``tells_finished``).

    An observer that needs totals rather than each request sets
    :attr:`tallies` (:class:`~ingest_mw.counts.Tallies`): the flow then adds
    every request's facts to them itself, which costs a request much less
    than an :class:`Observation` and a hook (the Prometheus observer counts
    so, and overrides no hook).
    """

    #: Whether the flow calls :meth:`started` / :meth:`received` /
    #: :meth:`finished`: whether a subclass overrides them (set for each
    #: subclass as it is defined, unless the subclass says so itself).
    tells_started: bool = False
    tells_received: bool = False
    tells_finished: bool = False
    #: Where the flow counts every request itself, for an observer that counts.
    tallies: Tallies | None = None
    _own_tells: frozenset[str] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The nearest class (in the method resolution order) that either says
        # so itself (an observer that sets its hooks per instance) or defines
        # the hook decides; none: not told.
        cls._own_tells = frozenset(flag for flag, _ in _TELLS if flag in vars(cls))
        for flag, hook in _TELLS:
            told = False
            for klass in cls.__mro__:
                if klass is Observer:
                    break
                if flag in vars(klass).get("_own_tells", ()):
                    told = bool(vars(klass)[flag])
                    break
                if hook in vars(klass):
                    told = True
                    break
            setattr(cls, flag, told)

    def observes(self, apis: Sequence[IngestAPI]) -> None:
        """Told once by each adapter this observer is given to: the APIs whose
        requests it will be told about (the Prometheus observer reads their
        admission's in-flight figures)."""

    def started(self, seen: Observation) -> Any:
        """A request has begun; the value returned comes back as ``token``."""
        return None

    def received(self, seen: Observation, token: Any) -> None:
        """Its body has been read."""

    def finished(self, seen: Observation, token: Any) -> None:
        """Its answer is decided."""


class Observers(Observer):
    """Several observers as one, told in the order given (one that raises
    is logged and the others are told all the same); each is told only
    the hooks it overrides. The first that counts (:attr:`~Observer.tallies`)
    is counted by the flow; any other is told ``finished``, which counts."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers
        counted = next((observer for observer in observers if getattr(observer, "tallies", None) is not None), None)
        self.tallies = None if counted is None else counted.tallies
        # An observer of no Observer subclass (duck-typed: the three methods) is told everything.
        self._starts = [getattr(observer, "tells_started", True) for observer in observers]
        self._receives = [getattr(observer, "tells_received", True) for observer in observers]
        self._finishes = [getattr(observer, "tells_finished", True) for observer in observers]
        #: The tallies of every other observer that counts, counted from the
        #: observation: each once (two observers on one registry share theirs).
        self._also_counted: list[Tallies] = []
        for observer in observers:
            tallies = getattr(observer, "tallies", None)
            if tallies is not None and all(tallies is not known for known in (self.tallies, *self._also_counted)):
                self._also_counted.append(tallies)
        self.tells_started = any(self._starts)
        self.tells_received = any(self._receives)
        self.tells_finished = any(self._finishes) or bool(self._also_counted)

    def observes(self, apis: Sequence[IngestAPI]) -> None:
        for observer in self.observers:
            observes = getattr(observer, "observes", None)  # a duck-typed one may not have it
            if observes is not None:
                observes(apis)

    def _tokens(self, token: list[Any] | None) -> Iterable[Any]:
        return repeat(None) if token is None else token  # None: no observer's started was called

    def started(self, seen: Observation) -> list[Any]:
        tokens: list[Any] = []
        for observer, starts in zip(self.observers, self._starts):
            own = None
            if starts:
                try:
                    own = observer.started(seen)
                except Exception:
                    _failed(observer.started)
            tokens.append(own)
        return tokens

    def received(self, seen: Observation, token: list[Any] | None) -> None:
        self._tell("received", self._receives, seen, token)

    def finished(self, seen: Observation, token: list[Any] | None) -> None:
        for tallies in self._also_counted:
            count_observation(tallies, seen)
        self._tell("finished", self._finishes, seen, token)

    def _tell(self, hook: str, told: list[bool], seen: Observation, token: list[Any] | None) -> None:
        """Call ``hook`` of each observer that ``told`` says is told it, with its own token."""
        for observer, tells, own in zip(self.observers, told, self._tokens(token)):
            if tells:
                method = getattr(observer, hook)
                try:
                    method(seen, own)
                except Exception:
                    _failed(method)

    def __repr__(self) -> str:
        return f"Observers{self.observers!r}"
