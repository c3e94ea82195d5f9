"""Start-up checks of ``ingest-mw serve``: each failure is one line and status 2.

The sink is opened and proved writable, the rate-limit storage is reached with
its credentials and the port is bound before any worker starts, so that a
mistake shows as ``ingest-mw serve: error: <what> (<what to do>)`` instead of a
traceback after "startup complete".
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

from limits.errors import StorageError

from ..ratelimit import RateLimit, refused_credentials
from ..sinks.base import StorageFull, close_sync
from ..sinks.disk import MIN_FREE_BYTES
from ..sinks.url import masked, sink_from_url

__all__ = ["StartupError", "check_rate_limit_storage", "listen", "open_sink", "prove_writable", "reason"]

logger = logging.getLogger("ingest_mw.serve")


class StartupError(Exception):
    """A configuration that cannot serve: its message is the one line the operator sees."""


def reason(error: BaseException) -> str:
    """What went wrong, in words: an OSError's own (``Permission denied``), else the message."""
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def open_sink(url: str, min_free_bytes: int = MIN_FREE_BYTES) -> Any:
    """The sink of ``--sink URL``, opened and, when it has a ``check()``, proved
    writable; the caller closes it."""
    try:
        sink = sink_from_url(url, min_free_bytes=min_free_bytes)
    except (ValueError, ImportError) as error:  # a wrong URL; a sink whose extra is missing says which
        raise StartupError(f"--sink {masked(url)}: {error}") from None
    except Exception as error:  # SinkUnavailable, OSError, a database driver's own: never a traceback
        raise StartupError(
            f"--sink {masked(url)}: cannot open it: {reason(error)}"
            " (does the directory exist, and may this user write there?)"
        ) from None
    prove_writable(sink, url)
    return sink


def prove_writable(sink: Any, url: str) -> None:
    """Run ``sink``'s ``check()``, if it has one: a sink that cannot be written
    is a :class:`StartupError` (and closed); one whose storage is out of room
    (:class:`~ingest_mw.sinks.StorageFull`) only a warning, as it may store
    again once room is made (``/readyz`` says 503 meanwhile)."""
    check = getattr(sink, "check", None)
    if check is None:
        return
    try:
        check()
    except StorageFull as error:
        logger.warning("--sink %s: not ready until it has room: %s", masked(url), error)
    except Exception as error:  # SinkUnavailable, or whatever a third-party check raises
        close_sync(sink)
        raise StartupError(
            f"--sink {masked(url)}: not writable: {reason(error)} (fix its permissions or path)"
        ) from None


def check_rate_limit_storage(rate_limit: RateLimit | None) -> None:
    """Reach the rate-limit storage once, with its credentials and its own
    timeouts, so that a wrong password or an unreachable host fails now rather
    than being failed open on every request."""
    if rate_limit is None or rate_limit.storage_uri.startswith("memory://"):
        return
    shown = masked(rate_limit.storage_uri)
    try:
        rate_limit.probe()
    except StorageError as error:
        if refused_credentials(error):
            raise StartupError(
                f"--rate-limit-storage {shown}: authentication failed: {error.storage_error} (check the password)"
            ) from None
        raise StartupError(
            f"--rate-limit-storage {shown}: unreachable: {error.storage_error} (is the server running there?)"
        ) from None
    except Exception as error:  # a client library missing, a URI the library refuses: never a traceback
        raise StartupError(f"--rate-limit-storage {shown}: {reason(error)}") from None


_BIND_HINTS = {
    errno.EADDRINUSE: "another server listens there: stop it or choose another --port",
    errno.EACCES: "ports below 1024 need privileges: choose --port 1024 or above, or serve behind a proxy",
    errno.EADDRNOTAVAIL: "this machine has no such address: use 127.0.0.1, 0.0.0.0 or one of its own",
}


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port``, inheritable by the worker processes."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise StartupError(
            f"--host {host}: {error.strerror} (use an IP address or a name this machine resolves)"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        hint = _BIND_HINTS.get(error.errno or 0, "check --host and --port")
        raise StartupError(f"cannot listen on {where}: {reason(error)} ({hint})") from None
    sock.set_inheritable(True)
    return sock
