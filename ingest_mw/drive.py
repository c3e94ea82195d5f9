"""Run the core's request flow with real I/O: one driver for sync code, one for async.

Every adapter (WSGI, ASGI, a Django view) supplies only how to read the body
into the flow, chunk by chunk as it arrives, and how to store a batch; the
drivers answer the flow's steps.
An exception raised while answering a step (a body over the limit, a storage
hook that fails, a rate-limit storage that cannot be loaded, a body that does
not decode, a read that fails in some other way) is thrown back into the
flow, which turns it into the API's own response (a 500, logged, for what it
did not expect). Only :class:`ClientDisconnected` raised while reading the
body ends the drive: there is nobody left to answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async

from .api import CheckRateLimit, Flow, ReadBody, Response, Step, Store
from .batch import Batch

__all__ = ["ClientDisconnected", "Feed", "drive_async", "drive_sync"]


class ClientDisconnected(Exception):
    """The client went away before its whole body was read."""


#: Where an adapter puts each chunk of the body (a :class:`~ingest_mw.body.BodyReader`'s
#: ``feed``: it raises the 413 the moment the body passes its limit).
Feed = Callable[[bytes], None]


def drive_sync(
    flow: Flow, read_body: Callable[[Feed], None], store: Callable[[Batch], Any]
) -> Response:
    """Run ``flow`` to its response. ``read_body(feed)`` reads the body to its
    end into ``feed``, or raises :class:`ClientDisconnected`, which propagates,
    when the client has gone."""
    try:
        step: Step = next(flow)
        while True:
            try:
                if isinstance(step, ReadBody):
                    read_body(step.reader.feed)
                    value: Any = None
                elif isinstance(step, Store):
                    value = store(step.batch)
                elif isinstance(step, CheckRateLimit):
                    value = step.rate_limit.hit(step.request)
                else:
                    value = step.work()
            except Exception as exc:
                if isinstance(exc, ClientDisconnected) and isinstance(step, ReadBody):
                    raise
                step = flow.throw(exc)
            else:
                step = flow.send(value)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        flow.close()


async def drive_async(
    flow: Flow,
    read_body: Callable[[Feed], Awaitable[None]],
    store: Callable[[Batch], Awaitable[Any]],
) -> Response:
    """Run ``flow`` to its response. ``read_body(feed)`` reads the body to its
    end into ``feed``, or raises :class:`ClientDisconnected`, which propagates,
    when the client has gone; a :class:`~ingest_mw.api.Decode` step runs in a
    worker thread."""
    try:
        step: Step = next(flow)
        while True:
            try:
                if isinstance(step, ReadBody):
                    await read_body(step.reader.feed)
                    value: Any = None
                elif isinstance(step, Store):
                    value = await store(step.batch)
                elif isinstance(step, CheckRateLimit):
                    value = await step.rate_limit.ahit(step.request)
                else:
                    value = await sync_to_async(step.work, thread_sensitive=False)()
            except Exception as exc:
                if isinstance(exc, ClientDisconnected) and isinstance(step, ReadBody):
                    raise
                step = flow.throw(exc)
            else:
                step = flow.send(value)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        flow.close()
