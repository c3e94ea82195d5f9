"""Waiting for new events without busy-polling: a cheap fingerprint checked at a bounded interval.

A follower (``tail --follow``, the page's stream) looks at the reader's
:meth:`~ingest_mw.read.Reader.fingerprint` (for a file, one ``stat`` of the
file and of its WAL) and queries only when it changed. The interval starts
at :data:`FASTEST` after a change and doubles while nothing happens, up to
:data:`SLOWEST`: an idle follower makes a few system calls a second, takes
no lock, and sees a new event within :data:`SLOWEST` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable

from asgiref.sync import sync_to_async

from .base import Reader

__all__ = ["FASTEST", "SLOWEST", "Watch"]

#: Seconds between looks right after a change (events often come in runs).
FASTEST = 0.05
#: Seconds between looks at most: how late an idle follower sees an event.
SLOWEST = 0.25


class Watch:
    """Tells when ``reader``'s storage may have changed since the last look."""

    def __init__(self, reader: Reader, *, fastest: float = FASTEST, slowest: float = SLOWEST) -> None:
        if not 0 < fastest <= slowest:
            raise ValueError("fastest must be more than 0 and at most slowest")
        self.reader = reader
        self.fastest = fastest
        self.slowest = slowest
        self.interval = fastest
        self._seen: Hashable = reader.fingerprint()

    def changed(self) -> bool:
        """Look once; the next interval follows from the answer."""
        now = self.reader.fingerprint()
        if now != self._seen:
            self._seen = now
            self.interval = self.fastest
            return True
        self.interval = min(self.interval * 2, self.slowest)
        return False

    def wait(self) -> None:
        """Block until the next look finds a change."""
        while True:
            time.sleep(self.interval)
            if self.changed():
                return

    async def wait_async(self) -> None:
        """:meth:`wait` for an event loop; each look runs in a worker thread
        (a database's fingerprint is a query)."""
        look = sync_to_async(self.changed, thread_sensitive=False)
        while True:
            await asyncio.sleep(self.interval)
            if await look():
                return
