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
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import sync_to_async

from .api import ClientDisconnected, Feed, Flow, Request, Response
from .batch import Batch

if TYPE_CHECKING:
    from .ratelimit import RateLimit, RateLimitDecision

__all__ = ["AsyncIO", "ClientDisconnected", "Feed", "SyncIO", "run_sync"]

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

    async def pause(self, seconds: float) -> None:
        time.sleep(seconds)  # this thread is the request's own

    async def store(self, batch: Batch) -> Any:
        return self._store(batch)


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

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
