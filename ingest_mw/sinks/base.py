"""Calling a storage hook from either adapter, whatever its colour."""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async

from ..batch import Batch

__all__ = [
    "BatchRefused",
    "ON_LOOP_EVENTS",
    "Outage",
    "Sink",
    "SinkUnavailable",
    "StorageFull",
    "as_async",
    "as_sync",
    "close_async",
    "close_sync",
    "in_large_batch_thread",
    "made_off_the_loop_if_large",
]

logger = logging.getLogger("ingest_mw.sinks")

_T = TypeVar("_T")


class SinkUnavailable(Exception):
    """The sink cannot store now: raised by a built-in sink's ``check()`` (or
    ``acheck()``) and by a batch it could not store because its storage
    failed (a file it cannot write, a database or server it cannot reach).
    The flow answers it 503 with Retry-After: the client is to send the
    batch again later.

    The message is one line naming the path or the URL (its password masked)
    and the reason, fit for a log line or a start-up error. The sink keeps
    working on its own: the next batch or check tries the storage again.
    """


class BatchRefused(SinkUnavailable):
    """The storage refused this batch for its own values (a constraint of the
    table, a value over the database's limit) while it stores others: sent
    again, it would be refused again, so the flow answers it 500, not 503.
    A :class:`SinkUnavailable`, with its one-line message, for whoever
    catches that."""


class StorageFull(SinkUnavailable):
    """The storage has no room now (a disk short of space, a Redis at its
    ``maxmemory``): the sink is not ready, though it may take batches again
    once room is made, so ``serve`` starts all the same and says so."""


class Outage:
    """A storing sink's failures: each one made a one-line :class:`SinkUnavailable`
    naming the storage (``what``: "SQLite sink /var/lib/events.db"), and logged
    once per outage: a line when batches start failing, one when they are
    stored again (logger ``ingest_mw.sinks``), never one per batch."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing = False

    def error(self, error: BaseException) -> SinkUnavailable:
        """``error`` as the sink's :class:`SinkUnavailable` (its reason on one line)."""
        if isinstance(error, SinkUnavailable):
            return error
        if isinstance(error, OSError) and error.strerror:
            reason = error.strerror  # without the path, named once already
        else:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return SinkUnavailable(f"{self.what}: {reason}")

    def refused(self, error: BaseException) -> BatchRefused:
        """A batch the storage refused for its own values: its one line, as a
        :class:`BatchRefused`; no outage of the storage, nothing logged here."""
        return BatchRefused(str(self.error(error)))

    def failed(self, error: BaseException) -> SinkUnavailable:
        """A batch failed with ``error``: the error to raise, logged if the outage starts now."""
        unavailable = self.error(error)
        if not self.failing:
            self.failing = True
            logger.error("%s; batches fail until it works again", unavailable)
        return unavailable

    def stored(self) -> None:
        """A batch was stored: the end of an outage, if there was one."""
        if self.failing:
            self.failing = False
            logger.warning("%s: storing again", self.what)


class Sink(Protocol):
    def __call__(self, batch: Batch) -> None | Awaitable[None]: ...


def _is_async(sink: Sink) -> bool:
    return iscoroutinefunction(sink) or iscoroutinefunction(getattr(sink, "__call__", None))  # noqa: B004 (the method, not callability)


# A plain callable that hands back an awaitable (a lambda, or a sync decorator
# around an async hook) has stored nothing yet: both faces await the result,
# so a 202 never goes out for a batch still in flight.
async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _own_acall(sink: Sink) -> Callable[[Batch], Awaitable[Any]] | None:
    """The sink's ``acall``, if the class that defines its ``__call__`` defines it
    too: a subclass that overrides ``__call__`` (with blocking work, say) and
    not ``acall`` is run in a thread like any other sync hook."""
    for cls in type(sink).__mro__:
        if "__call__" in cls.__dict__:
            acall = cls.__dict__.get("acall")
            own: Callable[[Batch], Awaitable[Any]] | None = getattr(sink, "acall", None)
            return own if acall is not None and iscoroutinefunction(acall) else None
    return None


def as_sync(sink: Sink) -> Callable[[Batch], Any]:
    """The hook as a plain function, for the WSGI adapter."""
    if _is_async(sink):
        return async_to_sync(sink)  # type: ignore[arg-type]

    def store(batch: Batch) -> None:
        result = sink(batch)
        if inspect.isawaitable(result):
            async_to_sync(_wait)(result)

    return store


#: The threads sync hooks run in under ASGI: their own, not the event loop's
#: default executor, so that hooks blocked on a locked database cannot starve
#: what else needs a thread there (limits' in-memory storage expires its
#: windows in one, while holding the lock of the client's key; large decodes).
#: How many run at once is the admission's ``max_concurrent_stores``; threads
#: are made as needed, up to this many, or up to ``max_concurrent_stores`` where
#: it is larger (a pool of that size, shared by the apps that ask for it).
STORE_THREADS = 64
_STORE_POOLS: dict[int, ThreadPoolExecutor] = {}
_STORE_POOLS_LOCK = threading.Lock()


def _store_pool(threads: int) -> ThreadPoolExecutor:
    """The pool of at least ``threads`` (and :data:`STORE_THREADS`) threads for sync hooks."""
    size = max(threads, STORE_THREADS)
    with _STORE_POOLS_LOCK:
        pool = _STORE_POOLS.get(size)
        if pool is None:
            pool = _STORE_POOLS[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="ingest_mw-store")
        return pool


#: A sink's ``acall`` keeps a batch of up to this many events on the event
#: loop (the memory sinks' encoding, the file sinks' rows and lines): a
#: fraction of the decode that ran on the loop before it, and no thread woken
#: for it. A larger batch (a body can hold millions of tiny events) is stored
#: from a worker thread (:func:`in_large_batch_thread`).
ON_LOOP_EVENTS = 4096

#: The threads :func:`in_large_batch_thread` makes large batches in. Making a large
#: batch's rows or JSON holds the GIL, and each batch being made holds its text
#: beside its objects: two at a time, as large decodes (``max_parallel_decodes``).
#: (Sixty at once, in a pool of 64, took a server to 2.2 GB where the budget
#: of body bytes in flight keeps it under 1 GB, and answered slower.)
LARGE_BATCH_THREADS = 2
_large_batch_pool: ThreadPoolExecutor | None = None


async def in_large_batch_thread(work: Callable[[Batch], _T], batch: Batch) -> _T:
    """``work(batch)`` (a large batch's rows, its JSON) from async code, in a
    thread of its own small pool (:data:`LARGE_BATCH_THREADS`; never the event
    loop's default executor, see :data:`STORE_THREADS`)."""
    global _large_batch_pool
    pool = _large_batch_pool
    if pool is None:
        with _STORE_POOLS_LOCK:
            pool = _large_batch_pool
            if pool is None:
                pool = _large_batch_pool = ThreadPoolExecutor(
                    max_workers=LARGE_BATCH_THREADS, thread_name_prefix="ingest_mw-large-batch"
                )
    return await sync_to_async(work, thread_sensitive=False, executor=pool)(batch)


async def made_off_the_loop_if_large(work: Callable[[Batch], _T], batch: Batch) -> _T:
    """``work(batch)`` (what a sink makes of a batch: its rows, its COPY text,
    its commands) from async code: on the event loop up to
    :data:`ON_LOOP_EVENTS` events, past that in :func:`in_large_batch_thread`,
    so that a large batch never stalls the loop (a 50,000-event batch took
    about 0.2 s to make)."""
    if len(batch.events) > ON_LOOP_EVENTS:
        return await in_large_batch_thread(work, batch)
    return work(batch)


def as_async(sink: Sink, *, threads: int = STORE_THREADS) -> Callable[[Batch], Awaitable[Any]]:
    """The hook as a coroutine function, for the ASGI adapter.

    A sync hook runs in a worker thread so it never blocks the event loop.
    It gets a thread of its own from a pool of at least ``threads``
    (``thread_sensitive=False``: as many batches at once as the admission
    lets into the hook) unless it says ``thread_sensitive = True``, as the
    Django ORM hook does.
    A sync hook that can also be called from async code without blocking
    offers ``async def acall(batch)``, which is awaited instead, on the loop
    (:class:`~ingest_mw.sinks.MemorySink` does: the hop to a thread and back
    would cost far more than its ``list.append``).
    """
    if _is_async(sink):
        return sink  # type: ignore[return-value]
    acall = _own_acall(sink)
    if acall is not None:
        return acall
    thread_sensitive = bool(getattr(sink, "thread_sensitive", False))
    if thread_sensitive:
        in_thread = sync_to_async(sink, thread_sensitive=True)
    else:
        in_thread = sync_to_async(sink, thread_sensitive=False, executor=_store_pool(threads))

    async def store(batch: Batch) -> None:
        result = await in_thread(batch)
        if inspect.isawaitable(result):
            await result

    return store


def close_sync(sink: object) -> None:
    """Close a sink that has a ``close()`` (sync or async), from sync code."""
    close = getattr(sink, "close", None)
    if close is None:
        return
    if iscoroutinefunction(close):
        async_to_sync(close)()
    else:
        close()


async def close_async(sink: object) -> None:
    """Close a sink that has a ``close()`` (sync or async), from async code.

    A sink whose async face holds resources of the event loop (a pool of
    asyncio connections) offers ``async def aclose()``, awaited instead.
    """
    aclose = getattr(sink, "aclose", None)
    if aclose is not None and iscoroutinefunction(aclose):
        await aclose()
        return
    close = getattr(sink, "close", None)
    if close is None:
        return
    if iscoroutinefunction(close):
        await close()
    else:
        await sync_to_async(close, thread_sensitive=False)()
