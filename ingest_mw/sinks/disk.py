"""Room on the disk of a file sink, for its readiness check.

A full disk still lets a file open and a transaction begin: only the next
write fails. So the SQLite and JSON Lines sinks' ``check()`` (what
``/readyz`` asks) also asks the file's disk how much it has left, and says
the sink unavailable below ``min_free_bytes``: a load balancer stops sending
before batches start failing. Writes are never refused for it.
"""

from __future__ import annotations

import os

from .base import Outage, SinkUnavailable

__all__ = ["MIN_FREE_BYTES", "LowDiskSpace", "require_free_space"]

#: The default ``min_free_bytes`` of the file sinks: room for a 20 MiB Better
#: Stack body stored with what SQLite writes beside it (its write-ahead log,
#: the time index) several times over.
MIN_FREE_BYTES = 64 * 1024 * 1024

_MIB = 1024 * 1024


class LowDiskSpace(SinkUnavailable):
    """The sink's disk has less than ``min_free_bytes`` free: not ready, though
    it may still store (``serve`` starts all the same, and says so)."""


def require_free_space(path: str, minimum: int, outage: Outage) -> None:
    """Raise ``outage``'s :class:`~ingest_mw.sinks.SinkUnavailable` when the
    disk that holds ``path`` has less than ``minimum`` bytes free for this
    process (0: not asked). A system without ``statvfs`` is not asked."""
    if not minimum or not hasattr(os, "statvfs"):
        return
    try:
        stats = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError as exc:
        raise outage.error(exc) from None
    free = stats.f_bavail * stats.f_frsize
    if free < minimum:
        raise LowDiskSpace(
            f"{outage.what}: {free / _MIB:.1f} MiB free on its disk, under min_free_bytes"
            f" ({minimum / _MIB:g} MiB): free some space"
        )
