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
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from .checks import seconds, whole_number
from .errors import IngestError
from .headers import SIZE_LIMIT_HEADER, byte_size

__all__ = [
    "FREE_BODY_BYTES",
    "Admission",
    "ByteBudget",
    "RefusalLog",
    "Slots",
    "Wakeup",
    "arguments_for",
    "shared",
]

logger = logging.getLogger("ingest_mw")

#: The body bytes a request may hold on its request slot alone, without
#: touching the shared byte budget: a one-event request never does, and
#: ``max_requests`` times this is the most that small bodies can hold.
FREE_BODY_BYTES = 64 * 1024

#: How often a request waiting for a storage or decode slot looks again even
#: if nothing woke it: a safety net only, since every slot given back wakes
#: the first waiter at once.
RECHECK_SECONDS = 0.25


class Wakeup(Protocol):
    """One waiting request's alarm, made by its adapter (``RequestIO.wakeup``).

    :meth:`wake` may be called from any thread, and before :meth:`wait`:
    a wake is kept until a wait takes it; it says ``False`` when nobody can be
    woken any more (the waiter's event loop is closed). :meth:`wait` returns
    once woken or after ``seconds``, without holding up other requests.
    """

    def wake(self) -> bool: ...

    def wait(self, seconds: float) -> Awaitable[None]: ...


class _Waiter:
    """One request in line for a slot: its alarm, and whether a slot was handed to it."""

    __slots__ = ("alarm", "granted")

    def __init__(self, alarm: Wakeup) -> None:
        self.alarm = alarm
        self.granted = False


class Slots:
    """``size`` interchangeable slots, taken and given back without a lock
    while nobody waits (``list.pop`` and ``list.append`` are each one atomic
    step).

    Those who :meth:`wait` are served first come, first served: while any
    waits, :meth:`take` refuses newcomers, and each slot given back is handed
    to the first in line at once (taken out of the line and woken), so that
    slots given back together go to as many waiters together. Without that, a
    request arriving just as a slot is given back would take it every time,
    and one that waits could wait until its deadline under a load the slots
    keep up with. The line is changed under a lock of its own, so that a
    waiter is always either in line or handed a slot, never both or neither.
    """

    __slots__ = ("size", "_free", "_waiting", "_line")

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: list[None] = [None] * size
        self._waiting: deque[_Waiter] = deque()
        self._line = threading.Lock()

    def take(self) -> bool:
        """Take a slot if one is free and nobody waits for one."""
        if self._waiting:
            return False
        try:
            self._free.pop()
        except IndexError:
            return False
        return True

    def give(self) -> None:
        self._free.append(None)
        if self._waiting:  # (after the append: a waiter that has just lined up sees the slot, or is handed it)
            self._hand_over()

    def _hand_over(self) -> None:
        """Hand each free slot to the first in line, while both last."""
        handed = []
        with self._line:
            free, waiting = self._free, self._waiting
            while waiting and free:
                free.pop()
                waiter = waiting.popleft()
                waiter.granted = True
                handed.append(waiter)
        for waiter in handed:
            if not waiter.alarm.wake():  # nobody left to wake (its loop is closed): its slot goes on
                self._take_back(waiter)

    def _take_back(self, waiter: _Waiter) -> None:
        """The slot handed to ``waiter``, if it still holds it unclaimed, given back."""
        with self._line:
            granted, waiter.granted = waiter.granted, False
        if granted:
            self.give()

    @property
    def in_use(self) -> int:
        return self.size - len(self._free)

    @property
    def waiting(self) -> int:
        """How many wait for a slot."""
        return len(self._waiting)

    async def wait(self, wakeup: Callable[[], Wakeup], deadline: float) -> bool:
        """Take a slot, waiting in line (``wakeup`` makes this request's alarm)
        until the monotonic ``deadline``; ``False`` if none came by then."""
        if self.take():
            return True
        waiter = _Waiter(wakeup())
        with self._line:
            self._waiting.append(waiter)
        got = False
        try:
            while True:
                if waiter.granted:
                    got = True
                    return True
                if self._free:  # free beside a line (given back as this one lined up): handed over in order
                    self._hand_over()
                    continue  # (once: the hand-over leaves no slot free while anyone waits)
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                await waiter.alarm.wait(min(left, RECHECK_SECONDS))
        finally:
            if not got:  # out of time, or cancelled: out of the line, or the slot handed to it meanwhile goes on
                with self._line:
                    if not waiter.granted:
                        try:
                            self._waiting.remove(waiter)
                        except ValueError:  # (taken back already)
                            pass
                self._take_back(waiter)


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
        # decoded body of typical events costs about 4.5 times its bytes in
        # Python objects, so 128 MiB (six 20 MiB bodies) keeps a server under
        # about 1 GiB; one of nothing but tiny values, up to some 25 times.
        max_body_bytes_in_flight: int = 128 * 1024 * 1024,
        # Batches inside the storage hook at once: a database pool's usual
        # size. A sink that commits the batches that meet together (SQLite,
        # JSON Lines) asks for more (its ``concurrent_batches``), which
        # ``serve`` gives it unless told otherwise.
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
        whole_number("max_requests", max_requests)
        whole_number("max_requests_per_client", max_requests_per_client, minimum=0)
        whole_number("max_body_bytes_in_flight", max_body_bytes_in_flight)
        whole_number("max_concurrent_stores", max_concurrent_stores)
        whole_number("max_storage_waiting", max_storage_waiting, minimum=0)
        whole_number("max_parallel_decodes", max_parallel_decodes)
        storage_wait = seconds("storage_wait", storage_wait)
        body_idle_timeout = seconds("body_idle_timeout", body_idle_timeout)
        log_interval = seconds("log_interval", log_interval)
        whole_number("retry_after", retry_after, minimum=0, unit=" of seconds")
        self.requests = Slots(max_requests)
        self.max_requests_per_client = max_requests_per_client
        #: Each client's requests in flight, one item each, while it has any
        #: (an entry is dropped when its last request is done: the table never
        #: holds more clients than requests in flight).
        self.clients: dict[str, list[None]] = {}
        self.body_bytes = ByteBudget(max_body_bytes_in_flight)
        self.stores = Slots(max_concurrent_stores)
        self.storage_waiting = Slots(max_storage_waiting)
        self.storage_wait = storage_wait
        self.decodes = Slots(max_parallel_decodes)
        self.body_idle_timeout = body_idle_timeout
        self.retry_after = retry_after
        self.log = RefusalLog(log_interval)
        self._retry_headers = (("Retry-After", str(retry_after)),)

    # --- refusals ----------------------------------------------------------------
    def unavailable(self, kind: str, why: str) -> IngestError:
        """The 503 of a limit reached, or of a storage that cannot store now
        (logged, rate-limited, as ``why``): the client is to retry after
        ``retry_after`` seconds."""
        self.log.refused(kind, why)
        return IngestError(503, "Service Unavailable", headers=self._retry_headers)

    def overloaded(self) -> IngestError:
        return self.unavailable(
            "requests", f"{self.requests.size} requests already being served (max_requests): request refused"
        )

    def enter_client(self, client: str) -> list[None] | None:
        """Count a request of ``client`` in flight: its list there (``None``
        when there is no such limit), or the 503 when it has
        ``max_requests_per_client`` in flight already.

        One item is appended, then the length looked at (each one atomic
        step): two requests that race for the last place may both be
        refused, never both admitted. A client's first request costs an
        empty list, not a :class:`Slots` of ``max_requests_per_client``.
        """
        size = self.max_requests_per_client
        if not size:
            return None
        in_flight = self.clients.get(client)
        if in_flight is None:
            in_flight = self.clients.setdefault(client, [])  # one list, whichever thread wins
        in_flight.append(None)
        if len(in_flight) > size:
            in_flight.pop()
            raise self.unavailable(
                "client",
                f"a client already has {size} requests being served (max_requests_per_client): request refused",
            )
        return in_flight

    def leave_client(self, client: str, in_flight: list[None]) -> None:
        in_flight.pop()
        if not in_flight:
            # A request of the same client that took this list meanwhile pops
            # its item from it all the same; a new one starts a new list.
            self.clients.pop(client, None)

    # --- body bytes ------------------------------------------------------------------
    def reserve(self, declared: int) -> int:
        """Take the budget for a body that declares ``declared`` bytes (its
        Content-Length): the bytes taken, 0 for a small one; 503 if the
        budget cannot hold it, before anything of it is read."""
        size = declared - FREE_BODY_BYTES
        if size <= 0:
            return 0
        if size > self.body_bytes.limit:  # never, however long the client waits: not a 503
            raise self.over_budget()
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
        if needed > self.body_bytes.limit:
            raise self.over_budget()
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

    def over_budget(self) -> IngestError:
        """The 413 of a body larger than the whole byte budget, which no wait would admit."""
        most = byte_size(self.body_bytes.limit + FREE_BODY_BYTES)
        return IngestError(
            413,
            f"the request body is over {most}, the most this server holds in flight at once"
            " (max_body_bytes_in_flight): send smaller requests",
            headers=[(SIZE_LIMIT_HEADER, most)],
        )

    def release(self, taken: int) -> None:
        if taken:
            self.body_bytes.give(taken)

    # --- storage and decoding slots ---------------------------------------------------
    async def enter_storage(self, wakeup: Callable[[], Wakeup]) -> None:
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
            entered = await self.stores.wait(wakeup, time.monotonic() + self.storage_wait)
        finally:
            self.storage_waiting.give()
        if not entered:
            raise self.unavailable(
                "storage",
                f"the storage hook took no batch for {self.storage_wait:g}s (storage_wait): batch refused",
            )

    async def enter_decode(self, wakeup: Callable[[], Wakeup]) -> None:
        """A slot for a large decode, waiting at most ``storage_wait``."""
        if self.decodes.take():
            return
        if not await self.decodes.wait(wakeup, time.monotonic() + self.storage_wait):
            raise self.unavailable(
                "decode",
                f"{self.decodes.size} large bodies already being decoded for {self.storage_wait:g}s"
                " (max_parallel_decodes): body refused",
            )


def arguments_for(sink: object, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``arguments`` of an :class:`Admission` for the APIs that store into
    ``sink``: with the store slots the sink asks for (its
    ``concurrent_batches``, as the group-commit sinks do) unless they give
    ``max_concurrent_stores`` themselves."""
    found = dict(arguments)
    asked = getattr(sink, "concurrent_batches", None)
    if asked is not None:
        found.setdefault("max_concurrent_stores", asked)
    return found


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
