"""The ASGI adapter: a native one, streaming the body into the core chunk by chunk.

(asgiref's ``WsgiToAsgi`` would spool the whole body before the body limit
could see it.) :class:`ASGIApp` serves ingest APIs at its mount point, routing
on ``path`` minus ``root_path`` as Starlette's ``Mount`` sets them.
:class:`ASGIMiddleware` wraps a host app and serves the ingest APIs under a
prefix; every other request, and every non-HTTP scope, reaches the host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from .api import BodyTimeout, ClientDisconnected, Feed, IngestAPI, Request, Response, Routes
from .batch import Batch
from .drive import AsyncIO
from .http import exact_paths, normalize_prefix, not_found, strip_prefix
from .observe import Observer, as_observer
from .sinks.base import Sink, as_async, close_async

__all__ = [
    "ASGIApp",
    "ASGIMiddleware",
    "ASGIRequestIO",
    "mounted_scope",
    "raw_headers",
    "request_from_scope",
    "route_path",
    "scope_headers",
    "send_response",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApplication = Callable[[Scope, Receive, Send], Awaitable[None]]


def route_path(scope: Scope) -> str:
    """The request path relative to the mount point (``path`` minus ``root_path``)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and (path == root_path or path.startswith(root_path + "/")):
        return path[len(root_path) :]
    return path


#: Header names as servers send them (lower-case bytes), decoded once: the
#: ones the APIs read and the ones most clients send. Any other name is
#: decoded per request; the table never grows, whatever clients send.
_DECODED_NAMES = {
    name.encode("latin-1"): name
    for name in (
        "accept",
        "accept-encoding",
        "authorization",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "host",
        "transfer-encoding",
        "user-agent",
        "x-api-key",
        "x-forwarded-for",
        "x-namespace",
        "x-service",
    )
}


def scope_headers(scope: Scope) -> dict[str, str]:
    """The request headers of an HTTP ``scope`` by lower-case name."""
    headers: dict[str, str] = {}
    decoded_name = _DECODED_NAMES.get
    for raw_name, raw_value in scope["headers"]:
        name = decoded_name(raw_name) or raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        # Repeated headers (two Content-Encoding lines, say) read as one list.
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class ASGIRequestIO(AsyncIO):
    """The I/O of one ASGI request: its body from ``receive``, its batch to the
    async ``store``; a body that sends nothing for ``idle_timeout`` seconds
    (the API's ``admission.body_idle_timeout``) raises :class:`BodyTimeout`."""

    __slots__ = ("receive", "idle_timeout")

    def __init__(self, receive: Receive, store: Callable[[Batch], Awaitable[Any]], idle_timeout: float) -> None:
        # The slots set here, not through super().__init__: one call fewer on
        # every request (made per request, the object is all of AsyncIO's state).
        self.store = store
        self.receive = receive
        self.idle_timeout = idle_timeout

    async def read_body(self, feed: Feed) -> None:
        """Read the request body into ``feed`` chunk by chunk as it arrives;
        :class:`ClientDisconnected` when the client leaves first,
        :class:`BodyTimeout` when it stalls."""
        receive = self.receive
        more_body = True
        while more_body:
            # Most bodies are there already when asked for (a server hands
            # over what it has read): stepping ``receive()`` once tells, and
            # only a chunk that must be waited for pays for a timer (one for
            # every request would cost more than the rest of the adapter).
            step = receive().__await__()
            try:
                waits_on = step.send(None)
            except StopIteration as done:
                message: Message = done.value
            else:
                message = await self._wait(step, waits_on)
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            more_body = message.get("more_body", False)
            chunk: bytes = message.get("body", b"")
            if chunk:  # an empty chunk with more to come is not the end
                feed(chunk)

    async def _wait(self, step: Generator[Any, Any, Message], waits_on: Any) -> Message:
        """The rest of a ``receive()`` that had to wait, under the idle timeout."""
        try:
            async with asyncio.timeout(self.idle_timeout):
                return await _Resumed(step, waits_on)
        except TimeoutError:
            raise BodyTimeout from None


class _Resumed:
    """The rest of an awaitable already stepped once (its iterator ``step``,
    which yielded ``first``), to be awaited as the awaitable itself would be."""

    __slots__ = ("step", "first")

    def __init__(self, step: Generator[Any, Any, Message], first: Any) -> None:
        self.step = step
        self.first = first

    def __await__(self) -> Generator[Any, Any, Message]:
        step = self.step
        value = self.first
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # a cancellation (the timeout's): the awaitable's to handle
                try:
                    value = step.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    value = step.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]


def mounted_scope(scope: Scope, prefix: str) -> Scope | None:
    """An HTTP ``scope`` as the app mounted at ``prefix`` sees it (``root_path``
    extended by it, as under Starlette's ``Mount``), or ``None`` when the
    request is elsewhere."""
    if scope["type"] != "http" or strip_prefix(route_path(scope), prefix) is None:
        return None
    mounted = dict(scope)
    mounted["root_path"] = scope.get("root_path", "") + prefix
    return mounted


def raw_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Header pairs as ASGI sends them: lower-case names, latin-1 bytes."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


async def send_response(response: Response, send: Send) -> None:
    """Answer with ``response`` (its Content-Length added)."""
    # Most answers (every 202 of Better Stack's) have no header of their own.
    headers = raw_headers(response.headers) if response.headers else []
    headers.append((b"content-length", b"%d" % len(response.body)))
    if response.close:  # uvicorn, hypercorn and daphne close after such an answer
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def request_from_scope(scope: Scope, path: str) -> Request:
    """The plain-values request the core takes, from an ASGI HTTP scope."""
    client = scope.get("client")
    return Request(scope["method"], path, scope_headers(scope), client[0] if client else None)


class ASGIApp:
    """Serve ``apis`` as an ASGI application, storing batches with ``sink``.

    An async ``sink`` is awaited; a sync one runs in a worker thread
    (see :func:`ingest_mw.sinks.as_async`). On lifespan shutdown the sink is
    closed. ``observer`` is told the facts of every ingest request
    (:mod:`ingest_mw.observe`; metrics, access log). ``endpoints`` answer
    their exact paths before any ingest route is tried (``/healthz``,
    ``/readyz``, ``/metrics``: see :mod:`ingest_mw.endpoints`, whose
    middleware does the same in front of any app, at the cost of a layer).
    """

    def __init__(
        self,
        apis: IngestAPI | Sequence[IngestAPI],
        *,
        sink: Sink,
        # None: no observation at all (the flow then pays next to nothing for it).
        observer: Observer | None = None,
        endpoints: Mapping[str, ASGIApplication] | None = None,
    ) -> None:
        self.routes = Routes(apis)
        self.sink = sink
        self.observer = as_observer(observer, self.routes.apis)
        self.endpoints = exact_paths(endpoints or {})
        # Threads for a sync hook: as many as the APIs let into it at once (each
        # distinct admission lets its own max_concurrent_stores in).
        admissions = {id(api.admission): api.admission for api in self.routes.apis}.values()
        self._store = as_async(sink, threads=sum(admission.stores.size for admission in admissions))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(receive, send)
            elif kind == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        path = route_path(scope)
        if self.endpoints:
            endpoint = self.endpoints.get(path)
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        found = self.routes.find(path)
        if found is None:
            response = not_found(self.routes, scope.get("root_path", ""), path)
        else:
            api, route = found
            try:
                io = ASGIRequestIO(receive, self._store, api.admission.body_idle_timeout)
                response = await api.handle(request_from_scope(scope, path), route, io, self.observer)
            except ClientDisconnected:
                return  # nobody to answer
        await send_response(response, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Close the sink (done on lifespan shutdown)."""
        await close_async(self.sink)


class ASGIMiddleware:
    """Serve ingest APIs under ``prefix`` in front of the ASGI ``app``.

    The ingest app sees ``root_path`` extended by ``prefix``, as under
    Starlette's ``Mount``; lifespan and every other scope go to ``app``.
    """

    def __init__(
        self,
        app: ASGIApplication,
        apis: IngestAPI | Sequence[IngestAPI],
        *,
        sink: Sink,
        prefix: str = "/ingest",
        observer: Observer | None = None,
    ) -> None:
        self.app = app
        self.ingest = ASGIApp(apis, sink=sink, observer=observer)
        self.prefix = normalize_prefix(prefix)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mounted = mounted_scope(scope, self.prefix)
        if mounted is not None:
            await self.ingest(mounted, receive, send)
            return
        await self.app(scope, receive, send)
