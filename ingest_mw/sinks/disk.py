"""Room on the disk of a file sink, for its readiness check.

A full disk still lets a file open and a transaction begin: only the next
write fails. So the SQLite and JSON Lines sinks' ``check()`` (what
``/readyz`` asks) also asks the file's disk how much it has left, and says
the sink unavailable below ``min_free_bytes``: a load balancer stops sending
before batches start failing. Writes are never refused for it.
"""

from __future__ import annotations

import errno
import os

from ..headers import byte_size, rounded_size
from .base import Outage, StorageFull

__all__ = ["MIN_FREE_BYTES", "require_free_space"]

#: The default ``min_free_bytes`` of the file sinks: room for a 20 MiB Better
#: Stack body stored with what SQLite writes beside it (its write-ahead log,
#: the time index) several times over.
MIN_FREE_BYTES = 64 * 1024 * 1024

#: What ``statvfs`` says on a filesystem that cannot tell (some FUSE and 9p
#: mounts): such a disk is not asked, as on a system without ``statvfs``.
_CANNOT_TELL = {errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}


def require_free_space(path: str, minimum: int, outage: Outage) -> None:
    """Raise ``outage``'s :class:`~ingest_mw.sinks.StorageFull` when the disk
    that holds the file ``path`` names (a symbolic link followed) has less
    than ``minimum`` bytes free for this process (0: not asked). A system or
    a filesystem that cannot say is not asked."""
    if not minimum or not hasattr(os, "statvfs"):
        return
    try:
        stats = os.statvfs(os.path.dirname(os.path.realpath(path)))
    except OSError as exc:
        if exc.errno in _CANNOT_TELL:
            return
        raise outage.error(exc) from None
    free = stats.f_bavail * stats.f_frsize
    if free < minimum:
        raise StorageFull(
            f"{outage.what}: {rounded_size(free)} free on its disk, under min_free_bytes ({byte_size(minimum)}):"
            " free some space"
        )
