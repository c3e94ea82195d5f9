"""Admission: the process-wide limits every request flow asks before it does work.

One :class:`Admission` holds the counters that are shared by every request of
a process, whatever API or adapter serves it: how many requests are being
served, how many body bytes they hold, how many batches are inside (or
waiting for) the storage hook, how many large decodes run at once. The flow
(:meth:`~ingest_mw.api.IngestAPI.handle`) asks it; the adapters never do.
A limit that is reached refuses the request at once with ``503`` and
``Retry-After`` (rendered in the API's own style): an overloaded server that
queues work answers nobody in time, one that refuses lets clients back off
and retry.

The common case costs nothing measurable: a request takes a slot from a list
(``list.pop``, atomic in CPython, so no lock is needed on an event loop or
between WSGI threads) and gives it back. Only a body larger than
:data:`FREE_BODY_BYTES` touches the shared byte budget, under a lock it holds
for an addition.

Every API's default is the one :func:`shared` admission of the process; a
host (or ``ingest-mw serve``) that wants other limits builds one and passes
it as ``admission=`` to each API: ``Admission(max_requests=...,
max_requests_per_client=..., max_body_bytes_in_flight=...,
max_concurrent_stores=..., max_storage_waiting=..., storage_wait=...,
max_parallel_decodes=..., body_idle_timeout=..., retry_after=...,
log_interval=...)``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Awaitable
from typing import Protocol

from .errors import IngestError

__all__ = [
    "FREE_BODY_BYTES",
    "Admission",
    "ByteBudget",
    "RefusalLog",
    "Slots",
    "shared",
]

logger = logging.getLogger("ingest_mw")

#: The body bytes a request may hold on its request slot alone, without
#: touching the shared byte budget: a one-event request never does, and
#: ``max_requests`` times this is the most that small bodies can hold.
FREE_BODY_BYTES = 64 * 1024

#: How often a request waiting for a storage or decode slot looks again.
POLL_SECONDS = 0.02


class Pause(Protocol):
    """The adapter's way to wait without blocking others (``RequestIO.pause``)."""

    def __call__(self, seconds: float) -> Awaitable[None]: ...


class Slots:
    """``size`` interchangeable slots, taken and given back without a lock
    (``list.pop`` and ``list.append`` are each one atomic step)."""

    __slots__ = ("size", "_free")

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: list[None] = [None] * size

    def take(self) -> bool:
        """Take a slot if one is free."""
        try:
            self._free.pop()
        except IndexError:
            return False
        return True

    def give(self) -> None:
        self._free.append(None)

    @property
    def in_use(self) -> int:
        return self.size - len(self._free)

    async def wait(self, pause: Pause, deadline: float) -> bool:
        """Take a slot, waiting (``pause``, polling) until the monotonic ``deadline``."""
        while not self.take():
            if time.monotonic() >= deadline:
                return False
            await pause(POLL_SECONDS)
        return True


class ByteBudget:
    """A number of bytes shared by every request of the process; each request
    takes what it holds and gives it back when done."""

    __slots__ = ("limit", "used", "peak", "_lock")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        #: The most ever held at once (for a benchmark or a metrics page).
        self.peak = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            used = self.used + size
            if used > self.limit:
                return False
            self.used = used
            if used > self.peak:
                self.peak = used
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.used -= size


class RefusalLog:
    """Log lines about refused requests, at most one per ``interval`` seconds
    for each kind of refusal, with the number refused since the last one: an
    attack cannot fill the disk with them."""

    __slots__ = ("interval", "_next", "_count", "_lock")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self._lock = threading.Lock()

    def refused(self, kind: str, why: str) -> None:
        now = time.monotonic()
        with self._lock:
            count = self._count.get(kind, 0) + 1
            if now < self._next.get(kind, -math.inf):
                self._count[kind] = count
                return
            self._next[kind] = now + self.interval
            self._count[kind] = 0
        logger.warning(
            "ingest_mw: %s (%d such since the last line about it; the next in %gs at the earliest)",
            why,
            count,
            self.interval,
        )


class Admission:
    """The process-wide limits of request serving (see the module docs).

    Every argument is keyword-only and checked here, so that a wrong value
    fails at start-up with a message that says what to give.
    """

    def __init__(
        self,
        *,
        # Requests served at once (past the route), whatever their size. A
        # small request costs a 2-CPU server some 0.1-0.5 ms: 256 at once is
        # already a queue of tens of milliseconds; beyond it, new requests get
        # 503 at once instead of joining a queue nobody would wait for.
        max_requests: int = 256,
        # Requests served at once for one client address (the peer's, or the
        # one the rate limit's trusted proxies name): a client that stalls its
        # bodies cannot take every slot of max_requests. A fleet behind one
        # NAT address meets the rate limit (500 a minute) long before it keeps
        # 32 requests in flight at once; 0 turns this off.
        max_requests_per_client: int = 32,
        # Body bytes held by all requests at once (Content-Length counted on
        # admission, then the bytes kept as they arrive, decompressed). A
        # decoded body costs about 4.5 times its bytes in Python objects, so
        # 128 MiB (six 20 MiB bodies) keeps a server under about 1 GiB.
        max_body_bytes_in_flight: int = 128 * 1024 * 1024,
        # Batches inside the storage hook at once: a database pool's usual
        # size; SQLite takes one writer at a time anyway.
        max_concurrent_stores: int = 8,
        # Batches waiting for a free store slot; past it, 503 at once.
        max_storage_waiting: int = 64,
        # Seconds a batch may wait for a store slot before its 503: well under
        # the 5-10 s timeout of log shippers, so a client hears 503 (and
        # retries later) rather than giving up on a batch that is then stored.
        storage_wait: float = 2.0,
        # Large decodes (bodies over OFFLOAD_BYTES) run at once in worker
        # threads. They hold the GIL: more than two only slow each other and
        # the event loop down.
        max_parallel_decodes: int = 2,
        # Seconds a body may send nothing before 408 (ASGI: the WSGI server's
        # own socket timeout applies there). A slow mobile link still sends
        # a packet a second; a stalled client holds a slot and its bytes.
        body_idle_timeout: float = 10.0,
        # The Retry-After of every 503 here, in seconds.
        retry_after: int = 1,
        # Seconds between two log lines about the same kind of refusal.
        log_interval: float = 60.0,
    ) -> None:
        for name, value in (
            ("max_requests", max_requests),
            ("max_body_bytes_in_flight", max_body_bytes_in_flight),
            ("max_concurrent_stores", max_concurrent_stores),
            ("max_parallel_decodes", max_parallel_decodes),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} = {value!r}: give a positive whole number")
        if (
            not isinstance(max_requests_per_client, int)
            or isinstance(max_requests_per_client, bool)
            or max_requests_per_client < 0
        ):
            raise ValueError(f"max_requests_per_client = {max_requests_per_client!r}: give a whole number, 0 or more")
        if not isinstance(max_storage_waiting, int) or isinstance(max_storage_waiting, bool) or max_storage_waiting < 0:
            raise ValueError(f"max_storage_waiting = {max_storage_waiting!r}: give a whole number, 0 or more")
        for name, seconds in (
            ("storage_wait", storage_wait),
            ("body_idle_timeout", body_idle_timeout),
            ("log_interval", log_interval),
        ):
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 < seconds < math.inf:
                raise ValueError(f"{name} = {seconds!r}: give a positive number of seconds")
        if not isinstance(retry_after, int) or isinstance(retry_after, bool) or retry_after < 0:
            raise ValueError(f"retry_after = {retry_after!r}: give a whole number of seconds, 0 or more")
        self.requests = Slots(max_requests)
        self.max_requests_per_client = max_requests_per_client
        #: Each client's slots while it has requests in flight (an entry is
        #: dropped when its last request is done: the table never holds more
        #: clients than requests in flight).
        self.clients: dict[str, Slots] = {}
        self.body_bytes = ByteBudget(max_body_bytes_in_flight)
        self.stores = Slots(max_concurrent_stores)
        self.storage_waiting = Slots(max_storage_waiting)
        self.storage_wait = float(storage_wait)
        self.decodes = Slots(max_parallel_decodes)
        self.body_idle_timeout = float(body_idle_timeout)
        self.retry_after = retry_after
        self.log = RefusalLog(log_interval)
        self._retry_headers = (("Retry-After", str(retry_after)),)

    # --- refusals ----------------------------------------------------------------
    def unavailable(self, kind: str, why: str) -> IngestError:
        """The 503 of a limit reached (logged, rate-limited, as ``why``)."""
        self.log.refused(kind, why)
        return IngestError(503, "Service Unavailable", headers=self._retry_headers)

    def overloaded(self) -> IngestError:
        return self.unavailable(
            "requests", f"{self.requests.size} requests already being served (max_requests): request refused"
        )

    def enter_client(self, client: str) -> Slots | None:
        """A request slot of ``client``'s own (``None`` when there is no such
        limit), or the 503 when it has ``max_requests_per_client`` in flight."""
        size = self.max_requests_per_client
        if not size:
            return None
        slots = self.clients.get(client)
        if slots is None:
            slots = self.clients.setdefault(client, Slots(size))  # one Slots, whichever thread wins
        if not slots.take():
            raise self.unavailable(
                "client",
                f"a client already has {size} requests being served (max_requests_per_client): request refused",
            )
        return slots

    def leave_client(self, client: str, slots: Slots) -> None:
        slots.give()
        if slots.in_use == 0:
            # A request of the same client that took this Slots meanwhile gives
            # its slot back to it all the same; a new one starts a new Slots.
            self.clients.pop(client, None)

    # --- body bytes ------------------------------------------------------------------
    def reserve(self, declared: int) -> int:
        """Take the budget for a body that declares ``declared`` bytes (its
        Content-Length): the bytes taken, 0 for a small one; 503 if the
        budget cannot hold it, before anything of it is read."""
        size = declared - FREE_BODY_BYTES
        if size <= 0:
            return 0
        if not self.body_bytes.take(size):
            raise self.unavailable(
                "body_bytes",
                f"{self.body_bytes.limit} body bytes already in flight (max_body_bytes_in_flight): body refused",
            )
        return size

    def grow(self, taken: int, held: int) -> int:
        """A body now holds ``held`` bytes, of which ``taken`` are already in
        the budget: take the rest (in steps of a MiB, to take the lock
        seldom) and answer the new amount taken, or raise the 503."""
        needed = held - FREE_BODY_BYTES
        if needed <= taken:
            return taken
        step = max(needed - taken, 1024 * 1024)
        if not self.body_bytes.take(step):
            if not self.body_bytes.take(needed - taken):
                raise self.unavailable(
                    "body_bytes",
                    f"{self.body_bytes.limit} body bytes already in flight (max_body_bytes_in_flight):"
                    " body refused while it arrived",
                )
            return needed
        return taken + step

    def release(self, taken: int) -> None:
        if taken:
            self.body_bytes.give(taken)

    # --- storage and decoding slots ---------------------------------------------------
    async def enter_storage(self, pause: Pause) -> None:
        """A store slot for a batch, waiting at most ``storage_wait`` behind
        at most ``max_storage_waiting`` others; otherwise the 503 (the batch
        is not handed to the hook)."""
        if self.stores.take():
            return
        if not self.storage_waiting.take():
            raise self.unavailable(
                "storage",
                f"{self.storage_waiting.size} batches already waiting for the storage hook"
                " (max_storage_waiting): batch refused",
            )
        try:
            entered = await self.stores.wait(pause, time.monotonic() + self.storage_wait)
        finally:
            self.storage_waiting.give()
        if not entered:
            raise self.unavailable(
                "storage",
                f"the storage hook took no batch for {self.storage_wait:g}s (storage_wait): batch refused",
            )

    async def enter_decode(self, pause: Pause) -> None:
        """A slot for a large decode, waiting at most ``storage_wait``."""
        if self.decodes.take():
            return
        if not await self.decodes.wait(pause, time.monotonic() + self.storage_wait):
            raise self.unavailable(
                "decode",
                f"{self.decodes.size} large bodies already being decoded for {self.storage_wait:g}s"
                " (max_parallel_decodes): body refused",
            )


#: Made on first use: a host that passes its own never pays for this one.
_shared: Admission | None = None
_shared_lock = threading.Lock()


def shared() -> Admission:
    """The process's default admission (default limits), shared by every API
    not given one of its own."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = Admission()
    return _shared
