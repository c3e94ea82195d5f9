"""The Live Tail page: what a sink stored, streamed, searched and charted in a browser.

:class:`LiveTailApp` is an ASGI app serving the page, its assets (shipped in
this package, no CDN) and its data endpoints at its mount point (``/ui``
under ``serve``). It reads through a :class:`~ingest_mw.read.Reader` of the
sink, never in the ingest path; new events reach open pages as server-sent
events. The refusals chart samples the metrics' counters
(:mod:`.refusals`), also beside the ingest path. Every request needs a UI token: a Bearer header, the cookie the page
sets, or ``?token=`` on the page's URL (exchanged for the cookie at once).
:class:`UIMount` puts the page beside an ingest app.
"""

from __future__ import annotations

import asyncio
import html
import importlib.resources
import logging
import signal
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import datetime
from types import FrameType
from typing import Any, TypeVar

import orjson
from asgiref.sync import sync_to_async

from ..asgi import (
    ASGIApplication,
    Receive,
    Scope,
    Send,
    mounted_scope,
    raw_headers,
    request_from_scope,
    route_path,
    scope_headers,
)
from ..auth import CredentialAuth
from ..errors import IngestError
from ..http import normalize_prefix
from ..ratelimit import RateLimit, as_rate_limit
from ..read import Query, Reader, StoredEvent, parse_since, reader_for
from ..read.follow import Watch
from ..read.query import LEVEL_FIELDS, first_text, level_message_rest
from ..read.rate import RateCache, bucket_seconds, chart_range, check_series, rate_series
from .refusals import SAMPLE_SECONDS, RefusalHistory

__all__ = ["UI_RATE_LIMIT", "LiveTailApp", "UIMount", "view"]

logger = logging.getLogger("ingest_mw.ui")

#: The cookie that carries the UI token after the first visit.
COOKIE = "ingest_mw_ui"
#: Events per page of a search, and at most per request.
PAGE_EVENTS = 100
MAX_PAGE_EVENTS = 1000
#: Events per server-sent message at most, and seconds between two messages
#: at least: what one open page can cost the server, whatever the ingest rate.
STREAM_EVENTS = 250
STREAM_GAP = 0.5
#: Seconds a stream lasts at most: then it ends, and the page opens the next
#: one from its cursor at once (so a server shutting down never waits longer
#: for a page than this, even where nothing tells the page to go).
STREAM_SECONDS = 10.0
#: Seconds between keep-alive comments on an idle stream (proxies close
#: connections that stay silent for a minute).
KEEPALIVE = 15.0
#: Newest events the filter suggestions are taken from.
FACET_EVENTS = 2000

_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
#: On every answer of the page: its own origin's scripts and requests only (the
#: events it shows are text, never markup), never framed, nothing sniffed, no
#: referrer (a first visit's URL holds the token).
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
        b" connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_T = TypeVar("_T")


def _asset(name: str) -> bytes:
    return importlib.resources.files(__name__).joinpath("static", name).read_bytes()


def view(event: StoredEvent) -> dict[str, Any]:
    """An event as the page shows it: the stored row plus its level, its
    message and the rest of its fields (as ``tail`` prints a line)."""
    row = event.row()
    row["level"], row["message"], row["rest"] = level_message_rest(event.data)
    return row


class _Answer(Exception):
    """Stop handling a request with this status and JSON message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


def _one(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values and values[-1] != "" else None


def _int(
    params: Mapping[str, list[str]], name: str, default: int | None, *, low: int = 0, high: int | None = None
) -> Any:
    text = _one(params, name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()):
        raise _Answer(400, f"{name} must be a whole number, not {text!r}")
    value = int(text)
    if value < low or (high is not None and value > high):
        raise _Answer(400, f"{name} must be from {low} to {high}")
    return value


def query_from_params(params: Mapping[str, list[str]], *, limit: int = PAGE_EVENTS) -> Query:
    """The page's filters (the ``tail`` command's, by the same names) from a query string."""
    times: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        text = _one(params, name)
        try:
            times[name] = parse_since(text, naive_utc=True) if text else None
        except ValueError as exc:
            raise _Answer(400, f"{name}: {exc}") from None
    return Query(
        since=times["since"],
        until=times["until"],
        api=_one(params, "api"),
        source=_one(params, "source"),
        dataset=_one(params, "dataset"),
        service=_one(params, "service"),
        levels=frozenset(params.get("level", ())),
        text=_one(params, "q"),
        before=_int(params, "before", None, low=1),
        limit=_int(params, "limit", limit, low=1, high=MAX_PAGE_EVENTS),
    )


class _Changes:
    """One watch of the reader for every open stream: started by the first
    stream, stopped when the last one closes, so a server with no page open
    does nothing at all for the page."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.generation = 0
        self._changed = asyncio.Condition()
        self._streams = 0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        watch = await sync_to_async(Watch, thread_sensitive=False)(self.reader)  # it reads the sink
        while True:
            try:
                await watch.wait_async()
            except Exception:  # a database gone for a moment: streams wait, and the watch goes on
                logger.warning("Live Tail: cannot look at the sink", exc_info=True)
                await asyncio.sleep(watch.slowest)
                continue
            async with self._changed:
                self.generation += 1
                self._changed.notify_all()

    def open(self) -> None:
        self._streams += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    def close(self) -> None:
        self._streams -= 1
        if self._streams == 0 and self._task is not None:
            self._task.cancel()
            self._task = None

    async def after(self, generation: int, timeout: float) -> int:
        """Wait until a change newer than ``generation``, at most ``timeout`` seconds."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.generation > generation), timeout)
            except TimeoutError:
                pass
            return self.generation


#: Requests a minute per client IP to the page and its data, as ingest
#: requests are counted: every request, before its token is looked at, so a
#: guesser is slowed down whatever it guesses. An open page makes a dozen a
#: minute (its stream reopens every 10 s, its charts refresh as often).
UI_RATE_LIMIT = "120/minute"


class LiveTailApp:
    """The page and its data for ``reader``, open to holders of one of ``tokens``
    (``{name: secret}`` or a list of secrets, as the ingest credentials).
    ``rate_limit`` counts every request per client IP (a limits string or a
    :class:`~ingest_mw.ratelimit.RateLimit`, with trusted proxies for one
    behind a proxy; ``None``: no limit), so token guesses are throttled."""

    def __init__(
        self,
        reader: Reader,
        *,
        tokens: Mapping[str, str] | list[str],
        rate_limit: RateLimit | str | None = UI_RATE_LIMIT,
    ) -> None:
        self.reader = reader
        self.auth = CredentialAuth(tokens, status=401)
        self.rate_limit = as_rate_limit(rate_limit)
        self._changes = _Changes(reader)
        self._rates = RateCache(reader)
        self._refusals = RefusalHistory()
        self._sampling: asyncio.Task[None] | None = None
        self._streams_end: asyncio.Event | None = None

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        return await sync_to_async(function, thread_sensitive=False)(*args)

    def _authorized(self, scope: Scope, params: Mapping[str, list[str]]) -> str | None:
        """The token the request carries, if it is one of the UI's."""
        headers = scope_headers(scope)
        candidates = []
        if "authorization" in headers:
            candidates.append(headers["authorization"])
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                candidates.append("Bearer " + urllib.parse.unquote(value))
        token = _one(params, "token")
        if token is not None:
            candidates.append("Bearer " + token)
        for candidate in candidates:
            try:
                self.auth.authenticate({"authorization": candidate})
            except IngestError:
                continue
            return candidate.partition(" ")[2].strip()
        return None

    def start_sampling(self) -> None:
        """Start sampling the metrics' refusals on this event loop (once): at
        start-up under :class:`UIMount`, else at the page's first request."""
        if self._sampling is None:
            self._sampling = asyncio.get_running_loop().create_task(self._sample_forever())

    async def _sample_forever(self) -> None:
        while True:
            try:
                await self._run(self._refusals.sample)
            except Exception:  # a metrics directory gone for a moment: the next sample goes on
                logger.warning("Live Tail: cannot read the metrics", exc_info=True)
            await asyncio.sleep(SAMPLE_SECONDS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.start_sampling()
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        path = route_path(scope)
        params = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        root = scope.get("root_path", "")
        if scope["method"] not in ("GET", "HEAD"):
            await _send(send, 405, b'{"message":"Method Not Allowed"}', [_JSON, (b"allow", b"GET, HEAD")])
            return
        if self.rate_limit is not None:
            decision = await self.rate_limit.ahit(request_from_scope(scope, path))
            if decision.refusal is not None:
                headers = raw_headers((*decision.headers, *decision.refusal.headers))
                message = orjson.dumps({"message": decision.refusal.detail})
                await _send(send, decision.refusal.status, message, [_JSON, *headers])
                return
        token = self._authorized(scope, params)
        page = path in ("", "/")
        if token is None:
            if page:
                await _send(send, 401, _login_page(root), [(b"content-type", b"text/html; charset=utf-8")])
            else:
                await _send(send, 401, b'{"message":"Unauthorized: send the UI token"}', [_JSON])
            return
        if page and _one(params, "token") is not None:
            # Into a cookie, and out of the address bar and the history.
            secure = "; Secure" if scope.get("scheme") == "https" else ""
            cookie = f"{COOKIE}={urllib.parse.quote(token)}; Path={root or '/'}; HttpOnly; SameSite=Strict{secure}"
            headers = [(b"location", (root or "").encode() + b"/"), (b"set-cookie", cookie.encode("latin-1"))]
            await _send(send, 303, b"", headers)
            return
        try:
            await self._route(path, params, root, scope, receive, send)
        except _Answer as answer:
            await _send(send, answer.status, orjson.dumps({"message": answer.message}), [_JSON])

    async def _route(
        self, path: str, params: Mapping[str, list[str]], root: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if path in ("", "/"):
            body = _asset("index.html").replace(b"__BASE__", html.escape(root).encode())
            await _send(send, 200, body, [(b"content-type", b"text/html; charset=utf-8"), _NO_STORE])
        elif path.startswith("/static/") and path[8:] in _ASSETS:
            name = path[8:]
            await _send(send, 200, _asset(name), [(b"content-type", _ASSETS[name].encode()), _NO_STORE])
        elif path == "/api/events":
            query = query_from_params(params)
            # The cursor first: a stream opened from it misses nothing the search did not see.
            cursor = await self._run(self.reader.cursor)
            events = await self._run(self.reader.search, query.up_to(cursor))
            more = len(events) == query.limit
            page_body = {
                "events": [view(e) for e in events],
                "next": events[-1].id if more else None,
                "cursor": cursor,
            }
            await _send(send, 200, orjson.dumps(page_body), [_JSON, _NO_STORE])
        elif path.startswith("/api/events/"):
            event_id = path[len("/api/events/") :]
            found = await self._run(self.reader.get, int(event_id)) if event_id.isdigit() else None
            if found is None:
                raise _Answer(404, "no such event (gone, or never stored)")
            await _send(send, 200, orjson.dumps(view(found)), [_JSON, _NO_STORE])
        elif path == "/api/rate":
            try:
                by = check_series(_one(params, "by") or "source")
            except ValueError as error:
                raise _Answer(400, str(error)) from None
            query = query_from_params(params)
            rate = await self._run(lambda: self._rates.rate(query, by=by))
            await _send(send, 200, orjson.dumps(rate), [_JSON, _NO_STORE])
        elif path == "/api/refusals":
            await _send(send, 200, orjson.dumps(await self._refusals_chart(params)), [_JSON, _NO_STORE])
        elif path == "/api/facets":
            events = await self._run(self.reader.search, Query(limit=FACET_EVENTS))
            facets = {
                name: sorted({value for e in events if (value := getattr(e, name))})
                for name in ("api", "source", "dataset", "service")
            }
            facets["level"] = sorted({(first_text(e.data, LEVEL_FIELDS) or "").lower() for e in events} - {""})
            await _send(send, 200, orjson.dumps(facets), [_JSON, _NO_STORE])
        elif path == "/api/stream" and scope["method"] == "HEAD":
            await _send(send, 200, b"", [(b"content-type", b"text/event-stream; charset=utf-8")])
        elif path == "/api/stream":
            await self._stream(query_from_params(params), params, scope, receive, send)
        else:
            raise _Answer(404, "Not Found")

    async def _stream(
        self, query: Query, params: Mapping[str, list[str]], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Server-sent events: ``event: events`` with ``{"events": [...], "skipped":
        bool}``, the new events oldest first, each time some are stored; the
        message id is the cursor to go on from (``after``)."""
        cursor = _int(params, "after", None)
        resumed = scope_headers(scope).get("last-event-id", "")  # a browser reconnecting
        if resumed.isascii() and resumed.isdigit():
            cursor = max(cursor or 0, int(resumed))
        if cursor is None:
            cursor = await self._run(self.reader.cursor)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    _NO_STORE,
                    (b"x-accel-buffering", b"no"),  # nginx: pass each message on at once
                    *SECURITY_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"retry: 1000\n: open\n\n", "more_body": True})
        loop = asyncio.get_running_loop()
        gone = loop.create_task(_disconnected(receive))
        ending = loop.create_task(self._ending().wait())
        changes = self._changes
        changes.open()
        ends_at = loop.time() + STREAM_SECONDS
        try:
            generation = -1  # read at once: what came since the cursor
            while True:
                waiting = asyncio.ensure_future(changes.after(generation, min(KEEPALIVE, ends_at - loop.time())))
                await asyncio.wait({waiting, gone, ending}, return_when=asyncio.FIRST_COMPLETED)
                if gone.done() or ending.done() or loop.time() >= ends_at:
                    waiting.cancel()
                    break
                new_generation = waiting.result()
                if new_generation == generation:
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                    continue
                generation = new_generation
                # The newest events since the cursor, at most STREAM_EVENTS: a page
                # cannot show more, and its reads stay bounded however fast
                # events arrive (the older ones are skipped, and it is told).
                step = query.but(after=cursor, limit=STREAM_EVENTS + 1)
                events = await self._run(self.reader.search, step)
                if events:
                    skipped = len(events) > STREAM_EVENTS
                    events = events[:STREAM_EVENTS]
                    cursor = events[0].id
                    data = orjson.dumps({"events": [view(e) for e in reversed(events)], "skipped": skipped})
                    message = b"id: %d\nevent: events\ndata: %s\n\n" % (cursor, data)
                    await send({"type": "http.response.body", "body": message, "more_body": True})
                await asyncio.sleep(STREAM_GAP)
            if not gone.done():
                # The page opens the next stream from its cursor at once.
                end = b"event: end\ndata: %d\n\n" % cursor
                await send({"type": "http.response.body", "body": end, "more_body": False})
        except OSError:  # the connection broke while sending
            pass
        finally:
            changes.close()
            gone.cancel()
            ending.cancel()

    async def _refusals_chart(self, params: Mapping[str, list[str]]) -> dict[str, Any]:
        """Refusals per bucket (the rate chart's buckets) of ``since`` .. ``until``, sampled now."""
        since, until = chart_range(query_from_params(params))
        history = self._refusals
        await self._run(history.sample)
        chart = history.describe()
        if not chart["available"]:
            return chart
        counts = history.counts(since.timestamp(), until.timestamp())
        return {**chart, **rate_series(counts, since=since, until=until, bucket=bucket_seconds(since, until))}

    def _ending(self) -> asyncio.Event:
        if self._streams_end is None:
            self._streams_end = asyncio.Event()
        return self._streams_end

    def end_streams(self) -> None:
        """End every open stream now (on the event loop): a server shutting down
        waits for its open responses, and a page's stream would never end.
        :class:`UIMount` calls it when the process gets SIGTERM or SIGINT."""
        if self._streams_end is not None:
            self._streams_end.set()

    def stop_sampling(self) -> None:
        """Stop sampling the refusals (on the event loop the sampling runs on)."""
        if self._sampling is not None:
            self._sampling.cancel()
            self._sampling = None

    def close(self) -> None:
        self.reader.close()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, *SECURITY_HEADERS, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _login_page(root: str) -> bytes:
    return _asset("login.html").replace(b"__BASE__", html.escape(root).encode())


class UIMount:
    """``ui`` at ``prefix`` (default ``/ui``) beside the ASGI ``app``, which gets
    every other request and the lifespan. The lifespan passing through calls
    :meth:`started` and :meth:`aclose`; a server that keeps the lifespan to
    itself calls them."""

    def __init__(self, app: ASGIApplication, ui: LiveTailApp, *, prefix: str = "/ui") -> None:
        self.app = app
        self.ui = ui
        self.prefix = normalize_prefix(prefix)
        if not self.prefix:
            raise ValueError("prefix must not be the root: the ingest APIs are served there")

    @classmethod
    def for_sink(
        cls,
        app: ASGIApplication,
        *,
        sink: object,
        tokens: Mapping[str, str],
        prefix: str = "/ui",
        rate_limit: RateLimit | str | None = UI_RATE_LIMIT,
    ) -> UIMount:
        """The page for ``sink`` (a built-in sink) beside ``app``."""
        return cls(app, LiveTailApp(reader_for(sink), tokens=tokens, rate_limit=rate_limit), prefix=prefix)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mounted = mounted_scope(scope, self.prefix)
        if mounted is not None:
            await self.ui(mounted, receive, send)
            return
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing(send))
            return
        await self.app(scope, receive, send)

    def _closing(self, send: Send) -> Send:
        async def forward(message: Any) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.started()
            elif message["type"] == "lifespan.shutdown.complete":
                await self.aclose()
            await send(message)

        return forward

    def started(self) -> None:
        """Called on the event loop once the server has started (done on the
        lifespan start-up passing through): SIGTERM and SIGINT end the page's
        streams first, then do what the server's handlers do."""
        self.ui.start_sampling()
        _before_exit_signals(self.ui.end_streams)

    async def aclose(self) -> None:
        """Stop sampling, close the page's reader (done on the lifespan shutdown passing through)."""
        self.ui.stop_sampling()
        await sync_to_async(self.ui.close, thread_sensitive=False)()

    def __getattr__(self, name: str) -> Any:
        # The wrapped app's attributes (``routes``, ``sink``) read through.
        return getattr(self.app, name)


def _before_exit_signals(callback: Callable[[], None]) -> None:
    """Have SIGTERM and SIGINT call ``callback`` on this event loop, then the
    handler in place (the ASGI server's own: uvicorn installs it with
    ``signal.signal`` before the lifespan starts, and puts back what it found
    when it stops, this wrapper with it). Only the main thread can."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue  # the default or ignored: not a server's graceful shutdown to go before

        def handler(number: int, frame: FrameType | None, previous: Callable[..., Any] = previous) -> None:
            loop.call_soon_threadsafe(callback)
            previous(number, frame)

        signal.signal(signum, handler)
