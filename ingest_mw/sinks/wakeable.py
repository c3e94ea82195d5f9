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
        # The running thread and its own controls: a thread stopped (or left
        # behind by a join that timed out) keeps its own, and a wake after a
        # stop starts another with new ones.
        self._running: _Run | None = None
        self._lock = threading.Lock()

    def wake(self) -> None:
        """Have ``step`` run soon (a thread that cannot be started raises ``RuntimeError``)."""
        run = self._running
        if run is None or run.pid != os.getpid() or not run.thread.is_alive():
            run = self._start()
        run.wake.set()

    def _start(self) -> _Run:
        with self._lock:
            run = self._running
            if run is not None and run.pid == os.getpid() and run.thread.is_alive():
                return run
            run = _Run()
            run.thread = threading.Thread(target=self._run, args=(run,), name=self.name, daemon=True)
            run.thread.start()  # (raises before anything is kept: the next wake tries again)
            self._running = run
            return run

    def _run(self, run: _Run) -> None:
        try:
            while True:
                run.wake.wait()
                # Cleared before the stop is looked at (stop sets the flag, then
                # wakes): a stop is never missed, and a wake during the step
                # makes one more.
                run.wake.clear()
                if run.stopping:
                    return
                try:
                    self._step()
                except Exception:
                    logger.exception("ingest_mw: %s failed; it goes on", self.name)
        finally:
            if self._finish is not None:
                self._finish()

    def stop(self, timeout: float) -> None:
        """End the thread once its step (if one runs) is done, waiting up to ``timeout`` seconds for it."""
        with self._lock:
            run, self._running = self._running, None
        if run is not None and run.pid == os.getpid():
            run.stopping = True
            run.wake.set()
            run.thread.join(timeout=timeout)


class _Run:
    """One thread of a :class:`WakeableThread`, with its own wake and stop."""

    __slots__ = ("thread", "wake", "stopping", "pid")

    thread: threading.Thread

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.stopping = False
        self.pid = os.getpid()
