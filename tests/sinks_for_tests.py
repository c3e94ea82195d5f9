"""Storage hooks the tests plug in: one async, one that always fails."""

from __future__ import annotations

import asyncio

from ingest_mw import Batch, MemorySink


class AsyncMemorySink(MemorySink):
    """An ``async`` hook: proves the adapters await coroutine sinks."""

    async def __call__(self, batch: Batch) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        super().__call__(batch)


class FailingSink:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, batch: Batch) -> None:
        self.calls += 1
        raise RuntimeError("disk full")


SINK_KINDS = {"sync": MemorySink, "async": AsyncMemorySink}
