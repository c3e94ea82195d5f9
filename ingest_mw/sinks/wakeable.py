"""A sink's background thread: started in the process that first wakes it, run each time it is woken."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

__all__ = ["WakeableThread"]

logger = logging.getLogger("ingest_mw.sinks")


class WakeableThread:
    """A daemon thread that calls ``step()`` after each :meth:`wake` (wakes that
    come while it runs make one more call), until :meth:`stop`.

    It is started by the first wake in each process (threads do not survive a
    fork) and started again by a wake after it ended, so a sink that relies
    on it never waits for a thread that is gone. ``step`` should not raise:
    what it raises is logged and the thread goes on. ``finish()``, if given,
    runs in the thread as it ends.
    """

    def __init__(self, name: str, step: Callable[[], None], *, finish: Callable[[], None] | None = None) -> None:
        self.name = name
        self._step = step
        self._finish = finish
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._starting = threading.Lock()

    def wake(self) -> None:
        """Have ``step`` run soon (a thread that cannot be started raises ``RuntimeError``)."""
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            self._start()
        self._wake.set()

    def _start(self) -> None:
        with self._starting:
            thread = self._thread
            if thread is not None and self._pid == os.getpid() and thread.is_alive():
                return
            self._stopping = False
            self._wake = threading.Event()
            thread = threading.Thread(target=self._run, args=(self._wake,), name=self.name, daemon=True)
            thread.start()  # (raises before anything is set: the next wake tries again)
            self._thread, self._pid = thread, os.getpid()

    def _run(self, wake: threading.Event) -> None:
        try:
            while True:
                wake.wait()
                if self._stopping:
                    return
                wake.clear()  # (before the step: a wake during it makes one more)
                try:
                    self._step()
                except Exception:
                    logger.exception("ingest_mw: %s failed; it goes on", self.name)
        finally:
            if self._finish is not None:
                self._finish()

    def stop(self, timeout: float) -> None:
        """End the thread once its step (if one runs) is done, waiting up to ``timeout`` seconds for it."""
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            self._stopping = True
            self._wake.set()
            thread.join(timeout=timeout)
        self._thread, self._pid = None, 0
