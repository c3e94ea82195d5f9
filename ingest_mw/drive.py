"""Run the core's request flow with real I/O: one driver for sync code, one for async.

Every adapter (WSGI, ASGI, a Django view) supplies only how to read the next
body chunk and how to store a batch; the drivers answer the flow's steps.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .api import READ_BODY, CheckRateLimit, Flow, Response
from .batch import Batch

__all__ = ["drive_async", "drive_sync"]


def drive_sync(
    flow: Flow, read: Callable[[], bytes], store: Callable[[Batch], Any]
) -> Response:
    """Run ``flow`` to its response. ``read`` returns ``b""`` at the end of the body."""
    try:
        step = next(flow)
        while True:
            if step is READ_BODY:
                value: Any = read()
            elif isinstance(step, CheckRateLimit):
                value = step.rate_limit.hit(step.request)
            else:
                try:
                    store(step.batch)  # type: ignore[union-attr]
                except Exception as exc:
                    step = flow.throw(exc)
                    continue
                value = None
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
        step = next(flow)
        while True:
            if step is READ_BODY:
                value: Any = await read()
                if value is None:
                    return None
            elif isinstance(step, CheckRateLimit):
                value = await step.rate_limit.ahit(step.request)
            else:
                try:
                    await store(step.batch)  # type: ignore[union-attr]
                except Exception as exc:
                    step = flow.throw(exc)
                    continue
                value = None
            step = flow.send(value)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        flow.close()
