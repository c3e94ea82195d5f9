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
from .asgi import ASGIApplication, Message, Receive, Scope, Send, request_from_scope, route_path
from .http import PLAIN_TEXT, status_line
from .ratelimit import RateLimit, RateLimitDecision, as_rate_limit
from .wsgi import Environ, StartResponse, WSGIApplication, request_from_environ

__all__ = ["RateLimitASGIMiddleware", "RateLimitWSGIMiddleware"]


def _refused(decision: RateLimitDecision) -> Response | None:
    """The plain-text answer to a refused request (``None`` to let it through)."""
    error = decision.refusal
    if error is None:
        return None
    body = error.detail.encode()
    headers = (PLAIN_TEXT, *error.headers, *decision.headers, ("Content-Length", str(len(body))))
    return Response(error.status, headers, body)


class RateLimitWSGIMiddleware:
    """Limit the requests reaching the WSGI ``app`` (a :class:`RateLimit` or a limits string)."""

    def __init__(self, app: WSGIApplication, rate_limit: RateLimit | str) -> None:
        self.app = app
        self.rate_limit = as_rate_limit(rate_limit)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        decision = self.rate_limit.hit(request_from_environ(environ, environ.get("PATH_INFO", "")))
        refused = _refused(decision)
        if refused is not None:
            start_response(status_line(refused.status), list(refused.headers))
            return [refused.body]

        def start_with_headers(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, *decision.headers], exc_info)

        return self.app(environ, start_with_headers)


def _raw(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


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
            headers = _raw(refused.headers)
            await send({"type": "http.response.start", "status": refused.status, "headers": headers})
            await send({"type": "http.response.body", "body": refused.body})
            return
        extra = _raw(decision.headers)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
