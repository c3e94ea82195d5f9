"""Several worker processes on one port: uvicorn's supervisor, telling the
metrics when a worker is gone.

:class:`Supervisor` is uvicorn's :class:`~uvicorn.supervisors.Multiprocess`
(a worker that dies is replaced; SIGTERM/SIGINT stop every worker
gracefully) that also calls :func:`ingest_mw.metrics.forget_process` for
each worker it reaps, so that the in-flight gauges forget it. The metrics
directory itself is :func:`ingest_mw.metrics.prepare_multiprocess`'s.
"""

from __future__ import annotations

from uvicorn.supervisors import Multiprocess

__all__ = ["Supervisor"]


class Supervisor(Multiprocess):
    """uvicorn's supervisor, forgetting dead workers in the metrics when ``metrics`` is on."""

    metrics: bool = False

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        if self.metrics:
            from ..metrics import forget_process

            for pid in before - {process.pid for process in self.processes}:
                if pid is not None:
                    forget_process(pid)
