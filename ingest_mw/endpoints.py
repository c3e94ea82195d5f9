"""Operator endpoints (``/healthz``, ``/readyz``, ``/metrics``) in front of any app.

:class:`EndpointsASGIMiddleware` and :class:`EndpointsWSGIMiddleware` answer
a few exact paths with their own small apps and pass every other request to
the wrapped app untouched, so a probe is never shadowed by an ingest route
(Baselime claims every path under its mount) and never reaches the rate
limit or an authentication check::

    health = Health(sinks=[sink], rate_limits=[rate_limit])
    app = EndpointsASGIMiddleware(
        ASGIApp(apis, sink=sink, observer=PrometheusObserver()),
        {**health_asgi_endpoints(health), "/metrics": metrics_asgi_app()},
    )

Paths are matched exactly against the request path relative to the
wrapper's own mount point (``path`` minus ``root_path``; ``PATH_INFO``), so
the wrapper can sit at the root of a server or under a host's prefix. The
wrapper is a layer every request passes through; an app that is itself the
ingest app (``serve``'s) takes the same mapping as
``ASGIApp(..., endpoints=...)`` / ``WSGIApp(..., endpoints=...)``, at the
cost of one test per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .asgi import ASGIApplication, Receive, Scope, Send, route_path
from .http import exact_paths
from .wsgi import Environ, StartResponse, WSGIApplication

__all__ = ["EndpointsASGIMiddleware", "EndpointsWSGIMiddleware"]


class EndpointsASGIMiddleware:
    """Answer the HTTP requests to the exact paths of ``endpoints`` with their
    ASGI apps; every other request and scope (lifespan included) goes to ``app``."""

    def __init__(self, app: ASGIApplication, endpoints: Mapping[str, ASGIApplication]) -> None:
        self.app = app
        self.endpoints = exact_paths(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # route_path's work, written out: this runs before every ingest request.
            endpoint = self.endpoints.get(route_path(scope) if scope.get("root_path") else scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


class EndpointsWSGIMiddleware:
    """Answer the requests to the exact paths of ``endpoints`` with their WSGI
    apps; every other request goes to ``app``."""

    def __init__(self, app: WSGIApplication, endpoints: Mapping[str, WSGIApplication]) -> None:
        self.app = app
        self.endpoints: dict[str, WSGIApplication] = exact_paths(endpoints)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        endpoint: WSGIApplication | None = self.endpoints.get(environ.get("PATH_INFO", ""))
        if endpoint is not None:
            return endpoint(environ, start_response)
        return self.app(environ, start_response)
