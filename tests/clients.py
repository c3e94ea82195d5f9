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

    def __init__(self, apis: IngestAPI | Sequence[IngestAPI], sink: Any) -> None:
        self.app = WSGIMiddleware(wsgi_host, apis, sink=sink, prefix=PREFIX)
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

    def __init__(self, apis: IngestAPI | Sequence[IngestAPI], sink: Any) -> None:
        self.app = ASGIMiddleware(asgi_host, apis, sink=sink, prefix=PREFIX)

    async def _request(self, method: str, path: str, body: bytes, headers: dict[str, str], peer: str) -> Reply:
        transport = httpx.ASGITransport(app=self.app, client=(peer, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.request(method, path, content=body, headers=headers)
        return Reply(response.status_code, dict(response.headers), response.content)

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, peer: str | None = None
    ) -> Reply:
        """``peer``: the client address the server reports (127.0.0.1 unless given)."""
        return asyncio.run(self._request(method, path, body, headers or {}, peer or "127.0.0.1"))


def make_client(kind: str, apis: IngestAPI | Sequence[IngestAPI], sink: Any) -> WSGIClient | ASGIClient:
    return {"wsgi": WSGIClient, "asgi": ASGIClient}[kind](apis, sink)
