"""Every rule a Better Stack JSON request meets in ``ingest-mw serve``, written by hand in one function.

A measuring instrument, not part of ingest_mw: the floor a Python ingest
that keeps all of serve's rules can reach, against which issue 13's item 8
targets are read (``bench/http.py --by-hand``, ``bench/instructions.py
hand``). Where ``bench/http.py``'s lean endpoint leaves out most rules,
this one does what ``serve --sink memory:// --rate-limit none`` does for
a JSON request, in the same order and with ingest_mw's own defaults, with
no object or call of its own beyond the answer's: the health, readiness
and metrics paths; the request and per-client admission; the framing
conflict; the method; the Bearer token compared in constant time with
every credential (a header sent twice alike read as one); the Content-Type
and Content-Length checks; no Content-Encoding but ``identity``; the byte
budget of a body past its free bytes; the body read under its limit; the
containers cap; ``orjson.loads``; an object or an array of objects; the
event count and depth caps (the depth walked at C speed, as ``EventCaps``
does); the reception time; a store slot; the newest 10,000 events kept as
one JSON text per batch under a lock; and the metrics' counts (requests by
status, the duration and storage histograms, body bytes, events stored).
Refusals answer a bare status (their bodies are off the measured path), and
a request that finds every store slot taken is refused where ingest_mw
waits in line for one.
"""

from __future__ import annotations

import hmac
import threading
from bisect import bisect_left
from collections import deque
from datetime import UTC, datetime
from gc import get_referents
from time import perf_counter
from typing import Any

import orjson

from ingest_mw.admission import FREE_BODY_BYTES, Admission
from ingest_mw.betterstack import MAX_BODY_BYTES as BODY_LIMIT
from ingest_mw.counts import DURATION_BUCKETS as BUCKETS
from ingest_mw.eventcaps import CONTAINERS_PER_EVENT, MAX_DEPTH, MAX_EVENTS

# ingest_mw's defaults, read from it (the numbers only: none of its code runs here).
_DEFAULTS = Admission()
MAX_REQUESTS, PER_CLIENT = _DEFAULTS.requests.size, _DEFAULTS.max_requests_per_client
MAX_STORES, BODY_BUDGET = _DEFAULTS.stores.size, _DEFAULTS.body_bytes.limit
MAX_CONTAINERS = CONTAINERS_PER_EVENT * MAX_EVENTS
KEPT_EVENTS = 10_000
ENDPOINTS = frozenset(("/healthz", "/readyz", "/metrics"))


class _Tally:
    """One thread's counts, as the metrics keep them."""

    __slots__ = ("requests", "duration", "duration_sum", "body_bytes", "events", "storage", "storage_sum")

    def __init__(self) -> None:
        self.requests: dict[int, int] = {}
        self.duration = [0] * (len(BUCKETS) + 1)
        self.duration_sum = 0.0
        self.body_bytes = 0
        self.events = 0
        self.storage = [0] * (len(BUCKETS) + 1)
        self.storage_sum = 0.0


def by_hand_app(token: str, lifespan: Any, *, keep: bool = True) -> Any:
    """The ASGI app, taking ``token`` (source ``default``); ``lifespan`` answers
    lifespan scopes. ``keep=False``: the events are not kept (as
    ``bench/metrics.py``'s storage hook that keeps nothing)."""
    credentials = [(token.encode(), "default")]
    media_types = {"application/json"}
    in_flight = [0]
    budget_used = [0]
    stores = [None] * MAX_STORES
    clients: dict[str, list[int]] = {}
    kept: deque[tuple[Any, ...]] = deque()
    held = [0]
    lock = threading.Lock()
    local = threading.local()
    accepted_start = {"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]}
    empty_body = {"type": "http.response.body", "body": b""}

    async def answer(send: Any, status: int) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send(empty_body)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await lifespan(scope, receive, send)
            return
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path in ENDPOINTS:
            await answer(send, 200)
            return
        if path not in ("/", ""):
            await answer(send, 404)
            return
        try:
            tally = local.tally
        except AttributeError:
            tally = local.tally = _Tally()
        started = perf_counter()
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        received_at = datetime.now(UTC)
        peer = scope.get("client")
        client = peer[0] if peer else "unknown"
        status, size, stored, storage = 503, 0, 0, None
        if in_flight[0] < MAX_REQUESTS:
            in_flight[0] += 1
            slots = clients.get(client)
            if slots is None:
                slots = clients[client] = [0]
            try:
                if slots[0] < PER_CLIENT:
                    slots[0] += 1
                    try:
                        status, size, stored, storage = await flow(scope, receive, headers, received_at)
                    finally:
                        slots[0] -= 1
            finally:
                in_flight[0] -= 1
                if not slots[0]:
                    clients.pop(client, None)
        if status == 202:
            await send(accepted_start)
            await send(empty_body)
        else:
            await answer(send, status)
        duration = perf_counter() - started
        requests = tally.requests
        requests[status] = requests.get(status, 0) + 1
        tally.duration[0 if duration <= BUCKETS[0] else bisect_left(BUCKETS, duration)] += 1
        tally.duration_sum += duration
        tally.body_bytes += size
        if storage is not None:
            tally.events += stored
            tally.storage[0 if storage <= BUCKETS[0] else bisect_left(BUCKETS, storage)] += 1
            tally.storage_sum += storage

    async def flow(scope: Any, receive: Any, headers: dict[str, str], received_at: datetime) -> tuple[Any, ...]:
        content_length = headers.get("content-length")
        if "transfer-encoding" in headers and content_length is not None:
            return 400, 0, 0, None
        if scope["method"] != "POST":
            return 405, 0, 0, None
        value = headers.get("authorization")
        source = source_of(value)
        if source is None and value and "," in value:
            source = source_of(once(value))  # a header sent twice with one credential
        if source is None:
            return 403, 0, 0, None
        content_type = headers.get("content-type", "")
        if content_type.partition(";")[0].strip().lower() not in media_types:
            if once(content_type).partition(";")[0].strip().lower() not in media_types:
                return 415, 0, 0, None
        declared = 0
        if content_length is not None:
            if not (content_length.isascii() and content_length.isdigit()):
                return 400, 0, 0, None
            declared = int(content_length)
            if declared > BODY_LIMIT:
                return 413, 0, 0, None
        if headers.get("content-encoding", "identity").strip().lower() != "identity":
            return 415, 0, 0, None
        taken = declared - FREE_BODY_BYTES
        if taken > 0:
            if budget_used[0] + taken > BODY_BUDGET:
                return 503, 0, 0, None
            budget_used[0] += taken
        try:
            return await read_and_keep(receive, source, received_at)
        finally:
            if taken > 0:
                budget_used[0] -= taken

    def source_of(value: str | None) -> str | None:
        presented = b""
        if value:
            scheme, _, value = value.strip().partition(" ")
            presented = (value if scheme.lower() == "bearer" else "").strip().encode("utf-8", "surrogateescape")
        source = None
        for secret, name in credentials:
            if hmac.compare_digest(presented, secret) and source is None:
                source = name
        return source

    def once(value: str) -> str:
        """A header value sent several times alike, as one (else itself)."""
        parts = {part.strip() for part in value.split(",")}
        return parts.pop() if len(parts) == 1 else value

    async def read_and_keep(receive: Any, source: str, received_at: datetime) -> tuple[Any, ...]:
        chunks = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 499, 0, 0, None
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > BODY_LIMIT:
                    return 413, 0, 0, None
                chunks.append(chunk)
            more = message.get("more_body", False)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if size > 2 * MAX_CONTAINERS and body.count(b"{") + body.count(b"[") > MAX_CONTAINERS:
            return 413, size, 0, None
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            return (400 if not body or body.isspace() else 406), size, 0, None
        if type(decoded) is dict:
            events = [decoded]
        elif type(decoded) is list and (not decoded or set(map(type, decoded)) == {dict}):
            events = decoded
        else:
            return 400, size, 0, None
        if len(events) > MAX_EVENTS:
            return 413, size, 0, None
        if size > MAX_DEPTH:
            level: list[Any] = events
            depth = 1
            while level:
                level = get_referents(*level)
                if depth >= MAX_DEPTH:
                    if not {dict, list}.isdisjoint(map(type, level)):
                        return 400, size, 0, None
                    break
                depth += 1
        if not events:
            return 202, size, 0, None
        try:
            stores.pop()
        except IndexError:
            return 503, size, 0, None  # (ingest_mw waits in line for a slot, then 503s)
        try:
            storing = perf_counter()
            if not keep:
                return 202, size, len(events), perf_counter() - storing
            text = orjson.dumps(events, option=orjson.OPT_UTC_Z)
            batch = ("betterstack", source, received_at, text, len(events))
            with lock:
                kept.append(batch)
                total = held[0] + len(events)
                while total > KEPT_EVENTS and len(kept) > 1:
                    total -= kept.popleft()[4]
                held[0] = total
            return 202, size, len(events), perf_counter() - storing
        finally:
            stores.append(None)

    return app
