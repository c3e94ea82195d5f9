"""Calling a storage hook from either adapter, whatever its colour."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async

from ..batch import Batch

__all__ = ["Sink", "as_async", "as_sync", "close_async", "close_sync"]


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
#: are made as needed, up to this many.
STORE_THREADS = 64
_STORE_THREADS = ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="ingest_mw-store")


def as_async(sink: Sink) -> Callable[[Batch], Awaitable[Any]]:
    """The hook as a coroutine function, for the ASGI adapter.

    A sync hook runs in a worker thread so it never blocks the event loop.
    It gets a thread of its own from the pool (``thread_sensitive=False``)
    unless it says ``thread_sensitive = True``, as the Django ORM hook does.
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
        in_thread = sync_to_async(sink, thread_sensitive=False, executor=_STORE_THREADS)

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
    """Close a sink that has a ``close()`` (sync or async), from async code."""
    close = getattr(sink, "close", None)
    if close is None:
        return
    if iscoroutinefunction(close):
        await close()
    else:
        await sync_to_async(close, thread_sensitive=False)()
