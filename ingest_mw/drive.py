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

__all__ = ["OFFLOAD_BYTES", "RESCAN_OFFLOAD_BYTES", "drive_async", "drive_sync"]

#: Under the async driver, bodies larger than this are decoded in a worker
#: thread. A fast decode (orjson or msgpack in C, then a light pass per event)
#: costs about 0.1 s per MiB at worst (a MiB of empty objects), so a body up
#: to 1 MiB, a typical 1000-event batch included, is decoded on the loop as a
#: plain orjson app would, without paying for a thread hop.
OFFLOAD_BYTES = 1024 * 1024
#: The same for a rescan (Baselime's element-by-element judging of a body that
#: did not parse): it costs up to ~1.5 microseconds a byte in Python, so only
#: a small one stays on the loop (a few milliseconds at most).
RESCAN_OFFLOAD_BYTES = 4 * 1024


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
                    if step.size > (RESCAN_OFFLOAD_BYTES if step.rescan else OFFLOAD_BYTES):
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
