"""A :class:`~ingest_mw.ratelimit.RateLimit` in front of any WSGI or ASGI app.

The same component the ingest APIs use, for an app that is not one of
them: every request is counted before the app sees it; a refused one gets
``429`` (or ``503`` if the storage is down and the limit fails closed) as
plain text with ``Retry-After``, and the app is not called; every answered
one gets the ``RateLimit-*`` headers added to the app's own. These classes
only carry requests to :meth:`RateLimit.hit` / :meth:`RateLimit.ahit` and
decisions back: the rules are all in :mod:`ingest_mw.ratelimit`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .api import Response
from .asgi import (
    ASGIApplication,
    Message,
    Receive,
    Scope,
    Send,
    raw_headers,
    request_from_scope,
    route_path,
    send_response,
)
from .http import PLAIN_TEXT
from .ratelimit import RateLimit, RateLimitDecision, as_rate_limit
from .wsgi import Environ, StartResponse, WSGIApplication, request_from_environ, write_response

__all__ = ["RateLimitASGIMiddleware", "RateLimitWSGIMiddleware"]


def _refused(decision: RateLimitDecision) -> Response | None:
    """The plain-text answer to a refused request (``None`` to let it through)."""
    error = decision.refusal
    if error is None:
        return None
    return Response(error.status, (PLAIN_TEXT, *error.headers, *decision.headers), error.detail.encode())


class RateLimitWSGIMiddleware:
    """Limit the requests reaching the WSGI ``app`` (a :class:`RateLimit` or a limits string)."""

    def __init__(self, app: WSGIApplication, rate_limit: RateLimit | str) -> None:
        self.app = app
        self.rate_limit = as_rate_limit(rate_limit)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        decision = self.rate_limit.hit(request_from_environ(environ, environ.get("PATH_INFO", "")))
        refused = _refused(decision)
        if refused is not None:
            return write_response(refused, start_response)

        def start_with_headers(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, *decision.headers], exc_info)

        return self.app(environ, start_with_headers)


class RateLimitASGIMiddleware:
    """Limit the HTTP requests reaching the ASGI ``app``; lifespan and websocket scopes pass untouched."""

    def __init__(self, app: ASGIApplication, rate_limit: RateLimit | str) -> None:
        self.app = app
        self.rate_limit = as_rate_limit(rate_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        decision = await self.rate_limit.ahit(request_from_scope(scope, route_path(scope)))
        refused = _refused(decision)
        if refused is not None:
            await send_response(refused, send)
            return
        extra = raw_headers(decision.headers)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
