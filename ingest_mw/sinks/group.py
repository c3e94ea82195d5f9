"""Group commit for sinks that write one batch at a time: batches that meet are written together.

A file or an embedded database takes one writer at a time, so a sink guards
it with a lock. :class:`GroupWriter` holds that lock and a queue in front of
it: a batch is queued, and whoever next holds the lock writes every batch
queued meanwhile in one go (one SQLite transaction, one ``write`` and one
``fsync``), so under load one commit serves many requests. Each batch is
marked stored or failed before the lock is let go, and its caller returns or
raises only then: never an acknowledgement for a batch not written.

Async callers (:meth:`GroupWriter.astore`) do not take a worker thread per
batch: the batch is queued for the writer's own thread, which settles every
caller's future of a group with one call into each event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from ..batch import Batch
from .base import SinkUnavailable, made_off_the_loop_if_large
from .wakeable import WakeableThread

logger = logging.getLogger("ingest_mw.sinks")

__all__ = ["GROUP_BATCHES", "GroupCommitSink", "GroupWriteFailed", "GroupWriter"]

#: The ``concurrent_batches`` of a sink that writes through a :class:`GroupWriter`:
#: the store slots it asks the admission for. Every batch inside such a sink
#: waits for (or joins) the next write, so the more the admission lets in,
#: the more share a commit: at 8, under 16 connections or more, each batch
#: waited for a slot before it could join one, and the SQLite sink stored
#: half as many a second (bench/README.md). 64: the threads sync hooks get.
GROUP_BATCHES = 64

#: What the sink makes of one batch before the lock (its rows, its lines).
Payload = TypeVar("Payload")


class _Pending(Generic[Payload]):
    """One batch's payload, queued or written (``done``, with ``error`` if it failed)."""

    __slots__ = ("payload", "done", "error", "loop", "future")

    def __init__(self, payload: Payload) -> None:
        self.payload = payload
        self.done = False
        self.error: SinkUnavailable | GroupWriteFailed | None = None  # why it was not stored
        # An async caller's: settled once done.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future[None] | None = None

    def failure(self) -> SinkUnavailable | GroupWriteFailed:
        """What its caller raises: a new exception of the error's kind, so that
        callers of one group, in their threads, never raise the same object."""
        assert self.error is not None
        return type(self.error)(str(self.error))


class GroupWriteFailed(Exception):
    """A group's write raised what the sink did not expect (a bug, no memory):
    not the storage's outage, so the flow answers it 500, not a 503 to retry;
    the writer logs its traceback once for the group."""


class GroupWriter(Generic[Payload]):
    """The lock, the queue and the writer thread of one sink.

    ``write_group(payloads)`` writes the payloads of a group in one go (it is
    called with :attr:`lock` held) and returns, for each, ``None`` if it was
    stored or the :class:`~ingest_mw.sinks.SinkUnavailable` it was not stored
    for (a :class:`~ingest_mw.sinks.BatchRefused` for a batch's own values),
    raised anew to its caller; an exception from it fails the whole group
    with a :class:`GroupWriteFailed` (its traceback logged once, here). The
    sink decides which failures are a batch's own (and tries the batch
    alone) and which are the storage's. ``what`` names the writer thread.
    """

    def __init__(self, write_group: Callable[[list[Payload]], Sequence[SinkUnavailable | None]], *, what: str) -> None:
        self._write_group = write_group
        #: Held while a group is written; the sink takes it too for what must
        #: not run beside a write (a check, reopening, closing).
        self.lock = threading.Lock()
        self._queue: deque[_Pending[Payload]] = deque()
        self._what = what
        self._thread = WakeableThread(f"ingest_mw-writer {what}", self._write_if_queued)

    # --- the two faces -------------------------------------------------------------------
    def store(self, payload: Payload) -> None:
        """Write ``payload`` from this thread, with those that meet it at the lock;
        :class:`~ingest_mw.sinks.SinkUnavailable` if it was not stored."""
        pending = _Pending(payload)
        self._queue.append(pending)
        with self.lock:
            if not pending.done:  # else a writer before this one wrote it with its own
                self._write_queued()
        if pending.error is not None:
            raise pending.failure() from None

    async def astore(self, payload: Payload) -> None:
        """Write ``payload`` from async code: queued for the writer thread, awaited until written."""
        pending = _Pending(payload)
        loop = asyncio.get_running_loop()
        pending.loop, pending.future = loop, loop.create_future()
        self._queue.append(pending)
        try:
            self._thread.wake()
        except RuntimeError as exc:  # no thread to be had: not queued after all, if nobody took it yet
            try:
                self._queue.remove(pending)
            except ValueError:
                pass
            else:
                raise SinkUnavailable(f"{self._what}: cannot start its writer thread ({exc})") from None
        try:
            await pending.future
        except asyncio.CancelledError:
            # The request is given up (no answer will be sent): its batch leaves
            # the queue with it, so that what is queued never outgrows what the
            # admission lets in; one a writer took already is written with its group.
            try:
                self._queue.remove(pending)
            except ValueError:
                pass
            raise
        if pending.error is not None:
            raise pending.failure() from None

    # --- writing ---------------------------------------------------------------------------
    def _write_queued(self) -> None:
        """Write every queued payload as one group (the caller holds the lock);
        each is marked done before the lock is let go."""
        queue, group = self._queue, []
        try:
            while True:  # (not "while queue": a cancelled caller may take its own out meanwhile)
                try:
                    group.append(queue.popleft())
                except IndexError:
                    break
            if not group:
                return
            try:
                outcomes: Sequence[SinkUnavailable | GroupWriteFailed | None] = self._write_group(
                    [pending.payload for pending in group]
                )
            except Exception as exc:  # the whole group's, unexpected: its traceback logged here
                logger.exception("ingest_mw: %s: writing %d batches failed", self._what, len(group))
                failed = GroupWriteFailed(f"{self._what}: writing failed ({type(exc).__name__}: {exc})")
                outcomes = [failed] * len(group)
            for pending, outcome in zip(group, outcomes, strict=True):
                pending.error, pending.done = outcome, True
        finally:
            self._settle(group)

    def _settle(self, group: list[_Pending[Payload]]) -> None:
        waiting: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for pending in group:
            if not pending.done:  # the writer itself was interrupted: not stored
                pending.error, pending.done = SinkUnavailable(f"{self._what}: interrupted before the write"), True
            if pending.loop is not None and pending.future is not None:
                waiting.setdefault(pending.loop, []).append(pending.future)
        for loop, futures in waiting.items():
            try:
                loop.call_soon_threadsafe(_settle_all, futures)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    # --- the writer thread -----------------------------------------------------------------
    def _write_if_queued(self) -> None:
        with self.lock:
            if self._queue:
                self._write_queued()

    def stop(self, timeout: float) -> None:
        """End the writer thread (waiting up to ``timeout`` seconds for the group
        it writes), then write here what is still queued."""
        self._thread.stop(timeout)
        self._write_if_queued()


class GroupCommitSink:
    """The hook of a sink that writes through a :class:`GroupWriter`
    (``_writer``): ``_payload(batch)`` makes what it writes of a batch (its
    rows, its lines), before the lock. Under ASGI, ``acall`` queues each batch
    for the writer thread; one of more than
    :data:`~ingest_mw.sinks.base.ON_LOOP_EVENTS` events is made in a worker
    thread first, off the loop."""

    #: The store slots this sink asks for (see :data:`GROUP_BATCHES`).
    concurrent_batches = GROUP_BATCHES
    _writer: GroupWriter[Any]

    def _payload(self, batch: Batch) -> Any:
        raise NotImplementedError

    def __call__(self, batch: Batch) -> None:
        self._writer.store(self._payload(batch))

    async def acall(self, batch: Batch) -> None:
        # A large one made off the loop, written by the writer all the same.
        await self._writer.astore(await made_off_the_loop_if_large(self._payload, batch))


def _settle_all(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)
