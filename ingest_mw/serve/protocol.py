"""uvicorn's httptools protocol with the connection protections it lacks.

uvicorn times out idle keep-alive connections, but nothing times out a
connection whose request headers never complete (nor one that sends nothing at
all), and it accepts connections until the process runs out of file
descriptors. :class:`GuardedHttpToolsProtocol` adds, per connection:

- a header timeout: the request line and headers must be complete within
  ``header_timeout`` seconds of the connection opening or of the first byte of
  the next request on a kept-alive connection, else the client gets a 408 and
  the connection is closed;
- a cap on open connections per worker: one more is answered 503 with
  ``Retry-After`` at once, before anything is read, and shut for writing;
  what it sends then is dropped until it closes, for at most
  :data:`REFUSED_LINGER_SECONDS` (closing a socket with unread bytes in it
  sends a reset, which can make the client's system drop the 503 unread).

Both refusals are logged through ``ingest_mw.serve.refusals``, whose lines are
rate-limited (see :mod:`ingest_mw.serve.logs`).

A host running its own app on uvicorn gets the same guards with
``uvicorn app:app --http ingest_mw.serve.protocol:GuardedHttpToolsProtocol``;
the limits then come from ``INGEST_MW_HEADER_TIMEOUT`` and
``INGEST_MW_MAX_CONNECTIONS``, else ``serve``'s defaults.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

__all__ = ["ConnectionLimits", "GuardedHttpToolsProtocol", "ServeConfig"]

refusals = logging.getLogger("ingest_mw.serve.refusals")


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    max_connections: int

    @staticmethod
    @functools.cache
    def from_environment() -> ConnectionLimits:
        """The limits of ``INGEST_MW_HEADER_TIMEOUT`` / ``INGEST_MW_MAX_CONNECTIONS``,
        else ``serve``'s defaults: for a protocol made by uvicorn's own command line."""
        from .options import OPTIONS

        values = {}
        for option in OPTIONS:
            if option.name in ("header_timeout", "max_connections"):
                found = option.from_env(os.environ)
                values[option.name] = option.default if found is None else found[1]
        return ConnectionLimits(**values)


class ServeConfig(Config):
    """uvicorn's config with the :class:`ConnectionLimits` the protocol reads."""

    def __init__(self, app: Any, *, connection_limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.connection_limits = connection_limits


def _plain_response(status: bytes, body: bytes, *headers: bytes) -> bytes:
    lines = [b"HTTP/1.1 " + status, *headers, b"content-type: text/plain; charset=utf-8"]
    lines += [b"content-length: %d" % len(body), b"connection: close", b"", body]
    return b"\r\n".join(lines)


TIMED_OUT = _plain_response(b"408 Request Timeout", b"request headers not complete in time")
#: Retry-After: a second is long enough for most connections of a burst to finish.
TOO_MANY = _plain_response(b"503 Service Unavailable", b"too many open connections", b"retry-after: 1")
#: How long a connection refused over the cap is read (and dropped) after its
#: 503: time for the client to read it and close first.
REFUSED_LINGER_SECONDS = 1.0
#: How many refused connections linger so at once in a process; past that the
#: next are closed at once, so that a flood holds few sockets (the open-file
#: limit ``serve`` sets counts them, beside ``--max-connections``).
MAX_LINGERING = 64
_lingering: set[_Refused] = set()


class _Refused(asyncio.Protocol):
    """What a connection refused over the cap becomes once its 503 is written
    and its sending side shut: what the client sends is dropped, and the
    connection closed when the client closes or after
    :data:`REFUSED_LINGER_SECONDS`. A protocol of its own, so that the HTTP
    protocol's own callbacks, run for every request, test nothing for it."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = loop.call_later(REFUSED_LINGER_SECONDS, transport.close)
        _lingering.add(self)

    def data_received(self, data: bytes) -> None:
        pass  # answered already

    def eof_received(self) -> None:
        return None  # the client has read the 503 and closed: closed now

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
        _lingering.discard(self)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with a header timeout and a connection cap.

    A request costs two attribute writes, not a timer: one timer per
    connection wakes every ``header_timeout`` seconds and closes the
    connection if a request's headers have been awaited that long.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits: ConnectionLimits = getattr(config, "connection_limits", None) or ConnectionLimits.from_environment()
        self.header_timeout = limits.header_timeout
        self.max_connections = limits.max_connections
        self.header_timer: asyncio.TimerHandle | None = None
        # When the headers being awaited started (loop time); None while none are.
        self.awaiting_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            transport.write(TOO_MANY)
            if len(_lingering) < MAX_LINGERING and transport.can_write_eof():
                transport.write_eof()
                transport.set_protocol(_Refused(transport, self.loop))
            else:
                self.transport = transport
                transport.close()
            refusals.warning(
                "connection refused: %d connections open, the limit of this worker (--max-connections)",
                len(self.connections),
            )
            return
        super().connection_made(transport)
        self.awaiting_since = self.loop.time()
        self.header_timer = self.loop.call_later(self.header_timeout, self._check_headers)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            # The whole request came, then the client closed its side
            # (shutdown(SHUT_WR), as HTTP/1.0 tools and some scripts do): it
            # still reads the answer. Kept open for writing, closed once answered.
            cycle.keep_alive = False
            return True
        return None  # idle, or mid-body: closed, as uvicorn does

    def on_message_begin(self) -> None:
        self.awaiting_since = self.loop.time()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.awaiting_since = None
        super().on_headers_complete()

    def _check_headers(self) -> None:
        self.header_timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        since = self.awaiting_since
        idle = self.cycle is None or self.cycle.response_complete
        if since is None and idle and self.timeout_keep_alive_task is None:
            # Bytes came that start no request (bare CRLFs, which cancel the
            # keep-alive timer): the headers' clock starts now.
            since = self.awaiting_since = now
        if since is not None and now - since >= self.header_timeout:
            self._headers_timed_out(answer=idle)
            return
        wait = self.header_timeout if since is None else since + self.header_timeout - now
        self.header_timer = self.loop.call_later(wait, self._check_headers)

    def _headers_timed_out(self, *, answer: bool) -> None:
        if answer:  # no answer of ours under way on this connection
            self.transport.write(TIMED_OUT)
        self.transport.close()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        refusals.warning(
            "connection closed: %s did not complete its request headers within %gs (--header-timeout)",
            client,
            self.header_timeout,
        )
