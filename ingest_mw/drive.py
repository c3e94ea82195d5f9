"""The adapters' side of the request flow: its I/O, done synchronously or asynchronously.

:meth:`~ingest_mw.api.IngestAPI.handle` asks a
:class:`~ingest_mw.api.RequestIO` for the body, a rate-limit hit, a decode
off the event loop and the storing of a batch. :class:`SyncIO` does them in
the calling thread (WSGI, a Django view) and :class:`AsyncIO` is the base of
the async ones (ASGI). An adapter supplies only how to read its server's body
and how to call the storage hook.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import sync_to_async

from .api import ClientDisconnected, Feed, Flow, Request, Response
from .batch import Batch

if TYPE_CHECKING:
    from .ratelimit import RateLimit, RateLimitDecision

__all__ = ["AsyncIO", "ClientDisconnected", "Feed", "LoopWakeup", "SyncIO", "ThreadWakeup", "run_sync"]

_T = TypeVar("_T")


class SyncIO:
    """The I/O of one request in the calling thread. ``read_body(feed)`` reads
    the whole body into ``feed`` (or raises :class:`ClientDisconnected`);
    ``store(batch)`` calls the storage hook. Nothing here ever suspends, so
    :func:`run_sync` runs the flow to its end in one step."""

    __slots__ = ("_read_body", "_store")

    def __init__(self, read_body: Callable[[Feed], None], store: Callable[[Batch], Any]) -> None:
        self._read_body = read_body
        self._store = store

    async def read_body(self, feed: Feed) -> None:
        self._read_body(feed)

    async def hit(self, rate_limit: RateLimit, request: Request) -> RateLimitDecision:
        return rate_limit.hit(request)

    async def offload(self, work: Callable[[], _T]) -> _T:
        return work()  # a sync server's worker thread is already off any event loop

    def wakeup(self) -> ThreadWakeup:
        return ThreadWakeup()  # this thread is the request's own: it blocks in wait

    async def store(self, batch: Batch) -> Any:
        return self._store(batch)


class ThreadWakeup:
    """A :class:`~ingest_mw.admission.Wakeup` for a request served in its own
    thread: ``wait`` blocks that thread (never suspends, as :func:`run_sync` needs)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def wake(self) -> bool:
        self._event.set()
        return True

    async def wait(self, seconds: float) -> None:
        self._event.wait(seconds)
        self._event.clear()  # (before the caller looks again: a wake after this is kept)


class LoopWakeup:
    """A :class:`~ingest_mw.admission.Wakeup` for a request on the running
    event loop; ``wake`` from another thread goes through the loop."""

    __slots__ = ("_loop", "_woken", "_future")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._woken = False
        self._future: asyncio.Future[None] | None = None

    def wake(self) -> bool:
        try:
            here = asyncio.get_running_loop() is self._loop
        except RuntimeError:  # a thread with no loop (a WSGI request of the same admission)
            here = False
        if here:
            self._set()
            return True
        try:
            self._loop.call_soon_threadsafe(self._set)
        except RuntimeError:  # the loop is closed: nobody left to wake
            return False
        return True

    def _set(self) -> None:
        self._woken = True
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self, seconds: float) -> None:
        if not self._woken:
            future = self._future = self._loop.create_future()
            timer = self._loop.call_later(seconds, _settle, future)
            try:
                await future
            finally:
                timer.cancel()
                self._future = None
        self._woken = False


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def run_sync(flow: Flow) -> Response:
    """Run a flow served by a :class:`SyncIO` to its response, in this thread."""
    try:
        flow.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    flow.close()
    raise RuntimeError("the flow waited on I/O: run_sync needs a SyncIO")


class AsyncIO(ABC):
    """The base of an async adapter's request I/O. ``store``, the storage hook
    as a coroutine function (:func:`~ingest_mw.sinks.as_async`), is given to
    the constructor and awaited as it is (an attribute, not a method to
    override: no extra coroutine per request); a subclass reads its server's
    body in :meth:`read_body`. The rate limit is hit with ``limits.aio`` and a
    large decode runs in a worker thread."""

    __slots__ = ("store",)

    def __init__(self, store: Callable[[Batch], Awaitable[Any]]) -> None:
        self.store = store

    @abstractmethod
    async def read_body(self, feed: Feed) -> None: ...

    async def hit(self, rate_limit: RateLimit, request: Request) -> RateLimitDecision:
        return await rate_limit.ahit(request)

    async def offload(self, work: Callable[[], _T]) -> _T:
        return await sync_to_async(work, thread_sensitive=False)()

    def wakeup(self) -> LoopWakeup:
        return LoopWakeup()
