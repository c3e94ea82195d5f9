"""Test clients that mount the ingest APIs under a prefix in a host app, WSGI or ASGI.

The same test table runs against both adapters through :func:`make_client`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, NamedTuple

import httpx
import webtest

from ingest_mw import ASGIMiddleware, IngestAPI, WSGIMiddleware
from ingest_mw.endpoints import EndpointsASGIMiddleware, EndpointsWSGIMiddleware
from ingest_mw.observe import Observer

PREFIX = "/ingest"
HOST_BODY = b"host app"


class Reply(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


def wsgi_host(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [HOST_BODY]


async def asgi_host(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": HOST_BODY})


class WSGIClient:
    kind = "wsgi"

    def keep_loop(self) -> None:
        """Nothing to keep: the WSGI app runs no event loop."""

    def close(self) -> None:
        pass

    def __init__(
        self,
        apis: IngestAPI | Sequence[IngestAPI],
        sink: Any,
        observer: Observer | None = None,
        endpoints: dict[str, Any] | None = None,
    ) -> None:
        self.app: Any = WSGIMiddleware(wsgi_host, apis, sink=sink, prefix=PREFIX, observer=observer)
        if endpoints:
            self.app = EndpointsWSGIMiddleware(self.app, endpoints)
        self._test = webtest.TestApp(self.app, extra_environ={"REMOTE_ADDR": "127.0.0.1"})

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, peer: str | None = None
    ) -> Reply:
        environ = {"REMOTE_ADDR": peer} if peer else {}
        response = self._test.request(
            path, method=method, body=body, headers=headers or {}, expect_errors=True, environ=environ
        )
        return Reply(response.status_int, {k.lower(): v for k, v in response.headerlist}, response.body)


class ASGIClient:
    kind = "asgi"

    def __init__(
        self,
        apis: IngestAPI | Sequence[IngestAPI],
        sink: Any,
        observer: Observer | None = None,
        endpoints: dict[str, Any] | None = None,
    ) -> None:
        self.app: Any = ASGIMiddleware(asgi_host, apis, sink=sink, prefix=PREFIX, observer=observer)
        if endpoints:
            self.app = EndpointsASGIMiddleware(self.app, endpoints)
        self._runner: asyncio.Runner | None = None

    def keep_loop(self) -> None:
        """Serve every request from now on in one event loop, as a server does
        (by default each runs in a loop of its own)."""
        self._runner = asyncio.Runner()

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()

    async def _request(
        self, method: str, path: str, body: bytes, headers: dict[str, str], peer: str = "127.0.0.1"
    ) -> Reply:
        transport = httpx.ASGITransport(app=self.app, client=(peer, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.request(method, path, content=body, headers=headers)
        return Reply(response.status_code, dict(response.headers), response.content)

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, peer: str | None = None
    ) -> Reply:
        """``peer``: the client address the server reports (127.0.0.1 unless given)."""
        request = self._request(method, path, body, headers or {}, peer or "127.0.0.1")
        return self._runner.run(request) if self._runner is not None else asyncio.run(request)


def mounted_post_scope(headers: dict[str, str], path: str = "/", client: str = "127.0.0.1") -> dict[str, Any]:
    """An ASGI scope of a POST to ``path`` of an app mounted at :data:`PREFIX`
    (``root_path`` set, as a server or a router hands it over), for tests that
    drive an ASGI app message by message."""
    return {
        "type": "http",
        "method": "POST",
        "path": PREFIX + path,
        "root_path": PREFIX,
        "headers": [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()],
        "client": (client, 5000),
    }


def make_client(
    kind: str,
    apis: IngestAPI | Sequence[IngestAPI],
    sink: Any,
    observer: Observer | None = None,
    endpoints: dict[str, Any] | None = None,
) -> WSGIClient | ASGIClient:
    """A host app of ``kind`` with the APIs under :data:`PREFIX`, told to ``observer``,
    with ``endpoints`` (``{"/metrics": app}``, WSGI or ASGI apps to match) in front."""
    return {"wsgi": WSGIClient, "asgi": ASGIClient}[kind](apis, sink, observer, endpoints)
