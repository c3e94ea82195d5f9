"""Several worker processes on one port: uvicorn's supervisor, and the
metrics directory they share.

:class:`Supervisor` is uvicorn's :class:`~uvicorn.supervisors.Multiprocess`
(a worker that dies is replaced; SIGTERM/SIGINT stop every worker
gracefully) that also tells prometheus-client when a worker is gone, so
that the in-flight gauges forget it. :func:`metrics_directory` puts
prometheus-client in multiprocess mode for the workers it starts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from uvicorn.supervisors import Multiprocess

__all__ = ["Supervisor", "metrics_directory"]

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # as ingest_mw.metrics names it


class Supervisor(Multiprocess):
    """uvicorn's supervisor, marking dead workers dead for prometheus-client."""

    metrics: bool = False

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        if self.metrics:
            gone = before - {process.pid for process in self.processes}
            if gone:
                from prometheus_client import multiprocess

                for pid in gone:
                    if pid is not None:
                        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


@contextmanager
def metrics_directory() -> Iterator[str]:
    """The ``PROMETHEUS_MULTIPROC_DIR`` of the workers about to start: the one
    the environment names, emptied of an earlier run's files (as
    prometheus-client requires), else a temporary one, removed at the end."""
    given = os.environ.get(MULTIPROC_DIR_ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield given
        return
    directory = tempfile.mkdtemp(prefix="ingest-mw-metrics-")
    os.environ[MULTIPROC_DIR_ENV] = directory
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_DIR_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)
