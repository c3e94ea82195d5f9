"""The WSGI adapter: moves bytes between a WSGI server and the sans-I/O core.

:class:`WSGIApp` serves ingest APIs at its mount point (it routes on
``PATH_INFO``, which is already relative to ``SCRIPT_NAME``).
:class:`WSGIMiddleware` wraps a host app and serves the ingest APIs under a
path prefix, passing every other request to the host untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from .api import IngestAPI, Request, Response, Routes
from .batch import Batch
from .drive import ClientDisconnected, Feed, SyncIO, run_sync
from .errors import IngestError
from .headers import content_length as parse_content_length
from .http import exact_paths, normalize_prefix, not_found, status_line, strip_prefix
from .observe import Observer, as_observer
from .sinks.base import Sink, as_sync, close_sync

__all__ = [
    "ClientDisconnected",
    "EnvironHeaders",
    "InputReader",
    "WSGIApp",
    "WSGIMiddleware",
    "closes_on_request",
    "request_from_environ",
    "respond",
    "write_response",
]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApplication = Callable[[Environ, StartResponse], Iterable[bytes]]

#: How much of ``wsgi.input`` is read at a time.
READ_SIZE = 64 * 1024


class EnvironHeaders(Mapping[str, str]):
    """Request headers read from a WSGI environ by lower-case name, without copying."""

    __slots__ = ("_environ",)

    def __init__(self, environ: Environ) -> None:
        self._environ = environ

    @staticmethod
    def _key(name: str) -> str:
        key = name.upper().replace("-", "_")
        return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key

    def __getitem__(self, name: str) -> str:
        return self._environ[self._key(name)]  # type: ignore[no-any-return]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._environ

    def __iter__(self) -> Iterator[str]:
        for key in self._environ:
            if key.startswith("HTTP_"):
                yield key[5:].lower().replace("_", "-")
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                yield key.lower().replace("_", "-")

    def __len__(self) -> int:
        return sum(1 for _ in self)


class InputReader:
    """A WSGI body in chunks, never reading past Content-Length (PEP 3333).

    It is made with the input's ``read(size)``: ``wsgi.input.read`` here,
    Django's ``request.read`` in the Django view. A body that ends before its
    Content-Length means the client has gone: :class:`ClientDisconnected`.
    :meth:`read_into` is what a :class:`~ingest_mw.drive.SyncIO` takes.
    """

    __slots__ = ("_read", "_remaining")

    def __init__(self, read: Callable[[int], bytes], content_length: str | None, *, terminated: bool = False) -> None:
        self._read = read
        try:
            length = parse_content_length(content_length)
        except ValueError:
            length = None  # refused by the flow before anything is read
        if length is not None:
            self._remaining: int | None = length
        elif terminated:
            self._remaining = None  # chunked: the server marks the end
        else:
            self._remaining = 0

    @classmethod
    def from_environ(cls, environ: Environ) -> InputReader:
        return cls(
            environ["wsgi.input"].read,
            environ.get("CONTENT_LENGTH"),
            terminated=bool(environ.get("wsgi.input_terminated")),
        )

    def read(self) -> bytes:
        remaining = self._remaining
        if remaining == 0:
            return b""
        size = READ_SIZE if remaining is None else min(READ_SIZE, remaining)
        try:
            chunk: bytes = self._read(size)
        except OSError as exc:  # Django's UnreadablePostError is one
            raise ClientDisconnected from exc
        if remaining is not None:
            if not chunk:
                raise ClientDisconnected
            self._remaining = remaining - len(chunk)
        return chunk

    def read_into(self, feed: Feed) -> None:
        """Read the whole body into ``feed``, chunk by chunk."""
        while chunk := self.read():
            feed(chunk)


def request_from_environ(environ: Environ, path: str) -> Request:
    """The plain-values request the core takes, from a WSGI environ."""
    return Request(environ["REQUEST_METHOD"], path, EnvironHeaders(environ), environ.get("REMOTE_ADDR"))


#: What a client that left mid-body is answered (nobody reads it; no traceback).
DISCONNECTED = Response(400, (), b"")


def respond(
    api: IngestAPI,
    request: Request,
    route: Mapping[str, str] | IngestError,
    body: InputReader,
    store: Callable[[Batch], Any],
    observer: Observer | None = None,
) -> Response:
    """Serve ``request`` in this thread, its body read from ``body``: the one
    sync path, for :class:`WSGIApp` and the Django view (:data:`DISCONNECTED`
    when the client left mid-body)."""
    try:
        return run_sync(api.handle(request, route, SyncIO(body.read_into, store), observer))
    except ClientDisconnected:
        return DISCONNECTED


def closes_on_request(environ: Environ) -> bool:
    """Whether the WSGI server takes ``Connection: close`` from the app. PEP
    3333 leaves hop-by-hop headers to the server: wsgiref (and Django's
    runserver, built on it) refuses them with an AssertionError, so it is not
    told (it answers one request per connection anyway, and runserver reads
    the rest of a body itself); Werkzeug, waitress and others honour it;
    gunicorn drops it (its sync worker closes every connection anyway)."""
    return not str(environ.get("SERVER_SOFTWARE", "")).startswith("WSGIServer/")


def write_response(response: Response, start_response: StartResponse, *, close: bool = True) -> Iterable[bytes]:
    """Answer with ``response`` (its Content-Length added; ``Connection:
    close`` when the response says so, unless ``close`` is false: a server
    that refuses the header)."""
    headers = [*response.headers, ("Content-Length", str(len(response.body)))]
    if response.close and close:
        headers.append(("Connection", "close"))
    start_response(status_line(response.status), headers)
    return [response.body]


class WSGIApp:
    """Serve ``apis`` as a WSGI application, storing batches with ``sink``.

    ``apis`` is one API app or several (tried in order, as in ``ingest-mw
    serve``: Better Stack at ``/``, Baselime at ``/v1/<dataset>``). ``sink``
    may be sync or async; an async one runs through asgiref's ``async_to_sync``.
    ``observer`` is told the facts of every ingest request
    (:mod:`ingest_mw.observe`; metrics, access log). ``endpoints`` answer
    their exact paths before any ingest route is tried (``/healthz``,
    ``/readyz``, ``/metrics``: see :mod:`ingest_mw.endpoints`).
    """

    def __init__(
        self,
        apis: IngestAPI | Sequence[IngestAPI],
        *,
        sink: Sink,
        # None: no observation at all (the flow then pays next to nothing for it).
        observer: Observer | None = None,
        endpoints: Mapping[str, WSGIApplication] | None = None,
    ) -> None:
        self.routes = Routes(apis)
        self.sink = sink
        self.observer = as_observer(observer, self.routes.apis)
        self.endpoints = exact_paths(endpoints or {})
        self._store = as_sync(sink)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if self.endpoints:
            endpoint = self.endpoints.get(path)
            if endpoint is not None:
                return endpoint(environ, start_response)
        found = self.routes.find(path)
        if found is None:
            response = not_found(self.routes, environ.get("SCRIPT_NAME", ""), path)
        else:
            api, route = found
            request = request_from_environ(environ, path)
            response = respond(api, request, route, InputReader.from_environ(environ), self._store, self.observer)
            if response.close:
                return write_response(response, start_response, close=closes_on_request(environ))
        return write_response(response, start_response)

    def close(self) -> None:
        """Close the sink (for a host's shutdown hook)."""
        close_sync(self.sink)


class WSGIMiddleware:
    """Serve ingest APIs under ``prefix`` in front of the WSGI ``app``.

    A request whose path is ``prefix`` or below it goes to the ingest APIs,
    with ``SCRIPT_NAME``/``PATH_INFO`` shifted as a WSGI mount would;
    everything else reaches ``app`` untouched.
    """

    def __init__(
        self,
        app: WSGIApplication,
        apis: IngestAPI | Sequence[IngestAPI],
        *,
        sink: Sink,
        prefix: str = "/ingest",
        observer: Observer | None = None,
    ) -> None:
        self.app = app
        self.ingest = WSGIApp(apis, sink=sink, observer=observer)
        self.prefix = normalize_prefix(prefix)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        rest = strip_prefix(environ.get("PATH_INFO", ""), self.prefix)
        if rest is None:
            return self.app(environ, start_response)
        environ = dict(environ)
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.prefix
        environ["PATH_INFO"] = rest
        return self.ingest(environ, start_response)
