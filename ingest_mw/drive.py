"""Run the core's request flow with real I/O: one driver for sync code, one for async.

Every adapter (WSGI, ASGI, a Django view) supplies only how to read the next
body chunk and how to store a batch; the drivers answer the flow's steps.
An exception raised while answering a step (a storage hook that fails, a
rate-limit storage that cannot be loaded, a body that does not decode) is
thrown back into the flow, which turns it into the API's own response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async

from .api import READ_BODY, CheckRateLimit, Decode, Flow, Response, Step
from .batch import Batch

__all__ = ["OFFLOAD_BYTES", "drive_async", "drive_sync"]

#: Bodies larger than this are decoded in a worker thread under the async
#: driver. Decoding costs up to a few microseconds a byte on the slowest path
#: (a Baselime array of tiny invalid elements), so this bounds how long one
#: request can hold the event loop to a few tens of milliseconds; smaller
#: bodies are decoded on the loop, where a thread hop would cost more.
OFFLOAD_BYTES = 64 * 1024


def drive_sync(
    flow: Flow, read: Callable[[], bytes], store: Callable[[Batch], Any]
) -> Response:
    """Run ``flow`` to its response. ``read`` returns ``b""`` at the end of the body."""
    try:
        step: Step = next(flow)
        while True:
            if step is READ_BODY:
                step = flow.send(read())
                continue
            try:
                if isinstance(step, Decode):
                    value: Any = step.work()
                elif isinstance(step, CheckRateLimit):
                    value = step.rate_limit.hit(step.request)
                else:
                    value = store(step.batch)  # type: ignore[union-attr]
            except Exception as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(value)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        flow.close()


async def drive_async(
    flow: Flow,
    read: Callable[[], Awaitable[bytes | None]],
    store: Callable[[Batch], Awaitable[Any]],
) -> Response | None:
    """Run ``flow`` to its response; ``None`` if ``read`` reports a disconnect (``None``)."""
    try:
        step: Step = next(flow)
        while True:
            if step is READ_BODY:
                chunk = await read()
                if chunk is None:
                    return None
                step = flow.send(chunk)
                continue
            try:
                if isinstance(step, Decode):
                    if step.size > OFFLOAD_BYTES:
                        value: Any = await sync_to_async(step.work, thread_sensitive=False)()
                    else:
                        value = step.work()
                elif isinstance(step, CheckRateLimit):
                    value = await step.rate_limit.ahit(step.request)
                else:
                    value = await store(step.batch)  # type: ignore[union-attr]
            except Exception as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(value)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        flow.close()
