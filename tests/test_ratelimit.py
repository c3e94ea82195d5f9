"""Rate limiting: the decision with a controlled clock, then both adapters, both APIs,
a real Redis shared by independent apps and stopped mid-test, the standalone
middleware around plain apps, and the ``serve`` flags.

Every app is mounted under a prefix in a host app. Time is real where windows
are long enough never to roll over during a test ("3/minute"); where a test
needs a window to pass it moves ``time.time``, which is the clock ``limits``
itself stamps and reads windows with.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import orjson
import pytest
import webtest
from clients import PREFIX, Reply, asgi_host, wsgi_host
from starlette.applications import Starlette
from starlette.routing import Mount
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from ingest_mw import (
    ASGIMiddleware,
    BaselimeAPI,
    BetterStackAPI,
    IngestAPI,
    MemorySink,
    Request,
    WSGIMiddleware,
)
from ingest_mw.cli import parser
from ingest_mw.errors import IngestError
from ingest_mw.ratelimit import RateLimit, as_rate_limit
from ingest_mw.ratelimit_middleware import RateLimitASGIMiddleware, RateLimitWSGIMiddleware
from ingest_mw.serve import AppSpec
from ingest_mw.serve.options import parse_settings

TOKEN = "bs-token"
KEY = "bl-key"
JSON = {"Content-Type": "application/json"}
#: (path, headers, body) of a valid request to each API.
BETTERSTACK = (PREFIX + "/", {"Authorization": f"Bearer {TOKEN}", **JSON}, b'{"m": 1}')
BASELIME = (PREFIX + "/v1/logs", {"x-api-key": KEY, **JSON}, b'[{"m": 1}]')
PEER = "192.0.2.10"
OTHER_PEER = "192.0.2.20"
RATELIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


# --- clients: one app, requests from a chosen peer address -------------------------------
class WSGIPeer:
    def __init__(self, app: Any) -> None:
        self._app = app

    def request(self, path: str, headers: dict[str, str], body: bytes = b"", peer: str = PEER) -> Reply:
        test = webtest.TestApp(self._app, extra_environ={"REMOTE_ADDR": peer})
        response = test.request(path, method="POST", body=body, headers=headers, expect_errors=True)
        return Reply(response.status_int, {k.lower(): v for k, v in response.headerlist}, response.body)

    def close(self) -> None:
        """Nothing to release: the app runs in the test's thread."""


class Loop:
    """One event loop for a whole test, as a server has one (the async storage belongs to its loop)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()

    def run(self, awaitable: Any) -> Any:
        return self._loop.run_until_complete(awaitable)

    def close(self) -> None:
        self.run(_cancel_other_tasks())
        self._loop.close()


async def _cancel_other_tasks() -> None:
    """What asyncio.run does before closing a loop (limits' memory storage leaves an expiry task)."""
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class ASGIPeer:
    def __init__(self, app: Any) -> None:
        self._app = app
        self._loop = Loop()

    async def _request(self, path: str, headers: dict[str, str], body: bytes, peer: str) -> Reply:
        transport = httpx.ASGITransport(app=self._app, client=(peer, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.post(path, content=body, headers=headers)
        return Reply(response.status_code, dict(response.headers), response.content)

    def request(self, path: str, headers: dict[str, str], body: bytes = b"", peer: str = PEER) -> Reply:
        reply: Reply = self._loop.run(self._request(path, headers, body, peer))
        return reply

    def close(self) -> None:
        self._loop.close()


@pytest.fixture
def connect():
    """``connect(kind, app)``: a client of ``app``, closed after the test."""
    made: list[WSGIPeer | ASGIPeer] = []

    def connect(kind: str, app: Any) -> WSGIPeer | ASGIPeer:
        client = WSGIPeer(app) if kind == "wsgi" else ASGIPeer(app)
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close()


@pytest.fixture
def ingest(connect):
    """``ingest(kind, api, sink=None)``: a client of ``api`` mounted at PREFIX in a host app."""

    def ingest(kind: str, api: IngestAPI, sink: MemorySink | None = None) -> WSGIPeer | ASGIPeer:
        middleware = WSGIMiddleware if kind == "wsgi" else ASGIMiddleware
        host = wsgi_host if kind == "wsgi" else asgi_host
        return connect(kind, middleware(host, api, sink=sink or MemorySink(), prefix=PREFIX))

    return ingest


def post(client: WSGIPeer | ASGIPeer, target=BETTERSTACK, peer: str = PEER, **headers: str) -> Reply:
    path, base_headers, body = target
    return client.request(path, {**base_headers, **headers}, body, peer)


def limit_headers(reply: Reply) -> tuple[str, ...] | None:
    """``(Limit, Remaining, Reset)`` as sent, or ``None`` if none of them was."""
    values = tuple(reply.headers.get(name) for name in RATELIMIT_HEADERS)
    assert all(values) or not any(values), reply.headers
    return values if all(values) else None  # type: ignore[return-value]


# --- the decision, with the clock in hand ------------------------------------------------
class Clock:
    """``time.time``, frozen until :meth:`advance` moves it.

    It starts off any window boundary (limits aligns counter windows to the
    epoch) and moves in binary fractions, so every expected value is exact.
    """

    def __init__(self) -> None:
        self.now = 1_800_000_012.5

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(time, "time", clock)
    return clock


@pytest.fixture(params=["hit", "ahit"])
def decide(request):
    """``decide(rate_limit, peer)``: one hit through the sync or the async face."""
    loop = Loop()

    def decide(rate_limit: RateLimit, peer: str = PEER):
        hit = Request("POST", "/", {}, peer)
        if request.param == "hit":
            return rate_limit.hit(hit)
        return loop.run(rate_limit.ahit(hit))

    yield decide
    loop.close()


def summary(decision) -> tuple[int | None, dict[str, str]]:
    """The refusal's status (``None`` if accepted) and every header to send, by name."""
    refusal = decision.refusal
    headers = dict(decision.headers) | dict(refusal.headers if refusal else ())
    return (refusal.status if refusal else None), headers


def test_headers_count_down_and_the_refusal_says_when_to_retry(clock, decide):
    rate_limit = RateLimit(limit="3/minute")
    # Reset is 61 on a frozen clock: limits counts a hit until its window's last
    # instant inclusive, so the window has room only after 60 seconds.
    for remaining in ("2", "1", "0"):
        assert summary(decide(rate_limit)) == (
            None,
            {"RateLimit-Limit": "3", "RateLimit-Remaining": remaining, "RateLimit-Reset": "61"},
        )
    refused = decide(rate_limit)
    assert summary(refused) == (
        429,
        {"RateLimit-Limit": "3", "RateLimit-Remaining": "0", "RateLimit-Reset": "61", "Retry-After": "61"},
    )
    with pytest.raises(IngestError) as raised:
        refused.raise_if_refused()
    assert (raised.value.status, raised.value.detail) == (429, "Too Many Requests")

    clock.advance(45.25)  # whole seconds, rounded up: 14 would be too early
    assert summary(decide(rate_limit))[1]["Retry-After"] == "15"
    assert summary(decide(rate_limit, OTHER_PEER))[0] is None  # another client, its own budget
    clock.advance(14.75)
    assert summary(decide(rate_limit))[0] == 429  # at the very end of the window: still full
    clock.advance(0.25)  # ... and just after it, as Retry-After said
    assert summary(decide(rate_limit)) == (
        None,
        {"RateLimit-Limit": "3", "RateLimit-Remaining": "2", "RateLimit-Reset": "61"},
    )


def test_several_limits_report_the_one_met_first(clock, decide):
    rate_limit = RateLimit(limit="2/second;5/minute")
    assert summary(decide(rate_limit))[1]["RateLimit-Limit"] == "2"
    assert summary(decide(rate_limit))[1]["RateLimit-Remaining"] == "0"
    assert summary(decide(rate_limit)) == (
        429,
        {"RateLimit-Limit": "2", "RateLimit-Remaining": "0", "RateLimit-Reset": "2", "Retry-After": "2"},
    )
    clock.advance(2)
    decide(rate_limit)
    decide(rate_limit)
    clock.advance(2)
    # The second is free again but the minute is used up: the minute is reported...
    assert summary(decide(rate_limit)) == (
        None,
        {"RateLimit-Limit": "5", "RateLimit-Remaining": "0", "RateLimit-Reset": "57"},
    )
    # ... and when both are full, Retry-After waits for the later one.
    assert summary(decide(rate_limit)) == (
        429,
        {"RateLimit-Limit": "5", "RateLimit-Remaining": "0", "RateLimit-Reset": "57", "Retry-After": "57"},
    )


def test_a_request_refused_by_a_short_window_does_not_use_up_a_longer_one(clock, decide):
    rate_limit = RateLimit(limit="1/second;3/minute")
    assert summary(decide(rate_limit))[0] is None
    assert summary(decide(rate_limit))[0] == 429  # not counted in the minute
    clock.advance(2)
    assert summary(decide(rate_limit))[0] is None
    clock.advance(2)
    assert summary(decide(rate_limit)) == (
        None,
        {"RateLimit-Limit": "3", "RateLimit-Remaining": "0", "RateLimit-Reset": "57"},
    )


@pytest.mark.parametrize("strategy", ["moving-window", "fixed-window", "sliding-window-counter"])
def test_every_strategy_refuses_the_request_over_the_limit(clock, decide, strategy):
    rate_limit = RateLimit(limit="3/minute", strategy=strategy)
    assert [summary(decide(rate_limit))[0] for _ in range(4)] == [None, None, None, 429]
    # A client that waits as told gets through within two windows. (The
    # sliding-window counter's estimate can be early: the retry is then
    # refused with a new, shorter Retry-After.)
    waited = 0
    while (decision := decide(rate_limit)).refusal is not None:
        status, headers = summary(decision)
        assert headers["RateLimit-Remaining"] == "0"
        retry_after = int(headers["Retry-After"])
        assert retry_after >= 1
        clock.advance(retry_after)
        waited += retry_after
        assert waited <= 120
    if strategy != "sliding-window-counter":
        assert waited == 61


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": "lots"},
        {"limit": "3/minute", "strategy": "token-bucket"},
        {"limit": "3/minute", "trusted_proxies": ["10.0.0.0/33"]},
        {"limit": "3/minute", "key": lambda request: "k", "trusted_proxies": ["10.0.0.0/8"]},
        {"limit": "3/minute", "storage_uri": "redsi://127.0.0.1:6379"},
        {"limit": "3/minute", "storage_uri": "memcached://127.0.0.1:11211"},  # no client installed
    ],
)
def test_configuration_mistakes_fail_at_construction(kwargs):
    with pytest.raises(ValueError):
        RateLimit(**kwargs)


def test_one_storage_uri_serves_both_faces():
    assert RateLimit(limit="1/second", storage_uri="async+redis://h:6379/0").storage_uri == "redis://h:6379/0"


def test_as_rate_limit_is_the_one_coercion():
    shared = RateLimit(limit="1/second")
    assert as_rate_limit(shared) is shared
    assert as_rate_limit(None) is None
    assert as_rate_limit("7/minute").limit == "7/minute"
    with pytest.raises(TypeError):
        as_rate_limit(500)  # type: ignore[call-overload]


# --- through the adapters and the APIs ---------------------------------------------------
def test_better_stack_limits_500_a_minute_per_ip_by_default(adapter, ingest):
    client = ingest(adapter, BetterStackAPI({"web": TOKEN}))
    assert BetterStackAPI({"web": TOKEN}).rate_limit.limit == "500/minute"
    reply = post(client)
    assert reply.status == 202
    limit, remaining, reset = limit_headers(reply)
    assert (limit, remaining) == ("500", "499") and 59 <= int(reset) <= 61


def test_a_refused_request_is_answered_before_its_body_is_read(adapter, ingest):
    sink = MemorySink()
    client = ingest(adapter, BetterStackAPI({"web": TOKEN}, rate_limit="2/minute"), sink)
    assert [post(client).status for _ in range(2)] == [202, 202]
    path, headers, _ = BETTERSTACK
    refused = client.request(path, headers, b"{not json")  # a 400 if it were parsed
    assert (refused.status, refused.body) == (429, b"Too Many Requests")
    assert refused.headers["content-type"] == "text/plain; charset=utf-8"
    assert 58 <= int(refused.headers["retry-after"]) <= 60
    assert limit_headers(refused)[:2] == ("2", "0")
    assert len(sink.batches) == 2


def test_baselime_has_no_limit_by_default_and_refuses_in_json_when_given_one(adapter, ingest):
    assert limit_headers(post(ingest(adapter, BaselimeAPI({"team": KEY})), BASELIME)) is None
    client = ingest(adapter, BaselimeAPI({"team": KEY}, rate_limit="1/minute"))
    assert post(client, BASELIME).status == 202
    refused = post(client, BASELIME)
    assert refused.status == 429
    assert refused.headers["content-type"] == "application/json"
    assert orjson.loads(refused.body)["message"] == "Too Many Requests"
    assert 59 <= int(refused.headers["retry-after"]) <= 60
    assert limit_headers(refused)[:2] == ("1", "0")


@pytest.mark.parametrize("trusted", [(), ("10.0.0.0/8",)])
def test_a_spoofed_x_forwarded_for_does_not_bypass_the_limit(adapter, ingest, trusted):
    rate_limit = RateLimit(limit="2/minute", trusted_proxies=trusted)
    client = ingest(adapter, BetterStackAPI({"web": TOKEN}, rate_limit=rate_limit))
    statuses = [post(client, **{"X-Forwarded-For": f"198.51.100.{n}"}).status for n in range(3)]
    assert statuses == [202, 202, 429]


def test_a_trusted_proxys_x_forwarded_for_names_the_client(adapter, ingest):
    rate_limit = RateLimit(limit="1/minute", trusted_proxies=["192.0.2.0/24"])
    client = ingest(adapter, BetterStackAPI({"web": TOKEN}, rate_limit=rate_limit))
    assert post(client, **{"X-Forwarded-For": "203.0.113.1"}).status == 202
    # The same client with a made-up address in front: still the same client.
    assert post(client, **{"X-Forwarded-For": "1.1.1.1, 203.0.113.1"}).status == 429
    assert post(client, peer=OTHER_PEER, **{"X-Forwarded-For": "203.0.113.2"}).status == 202


def test_a_key_function_counts_per_source_token(adapter, ingest):
    rate_limit = RateLimit(limit="1/minute", key=lambda request: f"source:{request.source}")
    client = ingest(adapter, BetterStackAPI({"web": TOKEN, "db": "other"}, rate_limit=rate_limit))
    assert post(client).status == 202
    assert post(client).status == 429
    assert post(client, Authorization="Bearer other").status == 202


# --- a real Redis: shared between apps, and stopped mid-test -----------------------------
def redis_betterstack(redis_server, **kwargs: Any) -> BetterStackAPI:
    rate_limit = RateLimit(limit="3/minute", storage_uri=redis_server.url, **kwargs)
    return BetterStackAPI({"web": TOKEN}, rate_limit=rate_limit)


@pytest.mark.parametrize("kinds", [("wsgi", "wsgi"), ("asgi", "asgi"), ("wsgi", "asgi")])
def test_independent_apps_sharing_a_redis_share_one_limit(redis_server, ingest, kinds):
    first, second = (ingest(kind, redis_betterstack(redis_server)) for kind in kinds)
    assert limit_headers(post(first))[:2] == ("3", "2")
    assert limit_headers(post(second))[:2] == ("3", "1")
    assert limit_headers(post(first))[:2] == ("3", "0")
    assert post(second).status == 429
    assert post(first).status == 429
    assert post(second, peer=OTHER_PEER).status == 202


def test_redis_down_fails_open_with_one_warning_and_counts_again_when_it_is_back(adapter, ingest, redis_server, caplog):
    client = ingest(adapter, redis_betterstack(redis_server))
    assert limit_headers(post(client)) is not None
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="ingest_mw"):
        replies = [post(client) for _ in range(5)]  # over the limit, were it counted
    assert [reply.status for reply in replies] == [202] * 5
    assert all(limit_headers(reply) is None for reply in replies)
    warnings = [r for r in caplog.records if r.name == "ingest_mw.ratelimit"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "accepting requests uncounted" in warnings[0].getMessage()
    redis_server.start()  # empty again, as after a real restart
    assert limit_headers(post(client))[:2] == ("3", "2")


@pytest.mark.parametrize(
    ("api", "target", "expected_body"),
    [
        (lambda rl: BetterStackAPI({"web": TOKEN}, rate_limit=rl), BETTERSTACK, b"Service Unavailable"),
        (
            lambda rl: BaselimeAPI({"team": KEY}, rate_limit=rl),
            BASELIME,
            b'{"message":"Service Unavailable"}',
        ),
    ],
    ids=["betterstack", "baselime"],
)
def test_redis_down_fails_closed_with_a_503_in_the_apis_own_style(
    adapter, ingest, redis_server, api, target, expected_body
):
    sink = MemorySink()
    rate_limit = RateLimit(limit="3/minute", storage_uri=redis_server.url, fail_open=False)
    client = ingest(adapter, api(rate_limit), sink)
    assert post(client, target).status == 202
    redis_server.stop()
    refused = post(client, target)
    assert (refused.status, refused.body) == (503, expected_body)
    assert len(sink.batches) == 1


# --- the standalone middleware around a plain app ----------------------------------------
class PlainApp:
    """A WSGI and ASGI app that answers 200 "hello" and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.calls += 1
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-App", "plain")])
        return [b"hello"]

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"text/plain"), (b"x-app", b"plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello"})


def mounted_plain_app(kind: str, plain: PlainApp, rate_limit: RateLimit | str) -> Any:
    """The rate-limited plain app at /api in a host: werkzeug's dispatcher, or Starlette's Mount."""
    if kind == "wsgi":
        return DispatcherMiddleware(wsgi_host, {"/api": RateLimitWSGIMiddleware(plain.wsgi, rate_limit)})
    limited = RateLimitASGIMiddleware(plain.asgi, rate_limit)
    return Starlette(routes=[Mount("/api", app=limited), Mount("/", app=asgi_host)])


def test_the_middleware_limits_any_app_and_adds_its_headers(adapter, connect):
    plain = PlainApp()
    client = connect(adapter, mounted_plain_app(adapter, plain, "2/minute"))
    first = client.request("/api/anything", {})
    assert (first.status, first.body, first.headers["x-app"]) == (200, b"hello", "plain")
    assert limit_headers(first)[:2] == ("2", "1")
    assert limit_headers(client.request("/api/else", {}))[:2] == ("2", "0")
    refused = client.request("/api/anything", {})
    assert (refused.status, refused.body) == (429, b"Too Many Requests")
    assert refused.headers["content-type"] == "text/plain; charset=utf-8"
    assert refused.headers["content-length"] == str(len(refused.body))
    assert 59 <= int(refused.headers["retry-after"]) <= 60
    assert limit_headers(refused)[:2] == ("2", "0")
    assert plain.calls == 2  # a refused request never reaches the app
    assert client.request("/api/anything", {}, peer=OTHER_PEER).status == 200
    assert client.request("/elsewhere", {}).body == b"host app"  # outside the mount: not limited


def test_the_middleware_fails_closed_without_a_traceback(adapter, connect, redis_server):
    plain = PlainApp()
    rate_limit = RateLimit(limit="2/minute", storage_uri=redis_server.url, fail_open=False)
    client = connect(adapter, mounted_plain_app(adapter, plain, rate_limit))
    redis_server.stop()
    refused = client.request("/api/x", {})
    assert (refused.status, refused.body) == (503, b"Service Unavailable")
    assert plain.calls == 0


def test_the_asgi_middleware_passes_other_scopes_through():
    plain = PlainApp()
    middleware = RateLimitASGIMiddleware(plain.asgi, RateLimit(limit="1/minute"))

    async def run() -> None:
        for kind in ("lifespan", "websocket", "lifespan"):
            await middleware({"type": kind}, None, None)  # nothing counted, nothing read

    asyncio.run(run())
    assert plain.calls == 3


# --- ingest-mw serve ---------------------------------------------------------------------
def build_app(settings):
    app, _, _ = AppSpec.from_settings(settings, tokens={"web": TOKEN}, api_keys={"team": KEY}).build()
    return app


def serve_args(*flags: str):
    return parse_settings(parser(), ["serve", "--sink", "memory://", *flags], environ={})


def test_serve_applies_one_rate_limit_to_every_api():
    app = build_app(
        serve_args(
            *("--rate-limit", "10/second;100/minute", "--rate-limit-storage", "redis://h:1/2"),
            *("--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "fd00::/8"),
        )
    )
    betterstack, otlp, baselime = app.routes.apis
    rate_limit = betterstack.rate_limit
    assert otlp.rate_limit is rate_limit and baselime.rate_limit is rate_limit
    assert (rate_limit.limit, rate_limit.storage_uri) == ("10/second;100/minute", "redis://h:1/2")
    assert [str(n) for n in rate_limit.proxies.networks] == ["10.0.0.0/8", "fd00::/8"]


def test_serve_defaults_to_better_stacks_limit_and_none_turns_it_off():
    default = build_app(serve_args()).routes.apis[0].rate_limit
    assert (default.limit, default.storage_uri, default.proxies.networks) == ("500/minute", "memory://", ())
    assert all(api.rate_limit is None for api in build_app(serve_args("--rate-limit", "None")).routes.apis)


# Bad rate-limit flags are refused before start-up: tests/test_serve_service.py (start-up mistakes).


def test_requests_with_a_wrong_credential_count_too(adapter, ingest):
    client = ingest(adapter, BetterStackAPI({"web": TOKEN}, rate_limit="2/minute"))
    assert [post(client, Authorization="Bearer guess").status for _ in range(2)] == [403, 403]
    refused = post(client, Authorization="Bearer guess-again")
    assert refused.status == 429  # guessing is throttled ...
    assert post(client).status == 429  # ... and spends the client's own budget


def test_a_failing_key_function_is_a_500_in_the_apis_style_not_a_traceback(adapter, ingest, caplog):
    rate_limit = RateLimit(limit="5/minute", key=lambda request: request.params["dataset"])
    client = ingest(adapter, BetterStackAPI({"web": TOKEN}, rate_limit=rate_limit))
    with caplog.at_level(logging.ERROR, logger="ingest_mw"):
        reply = post(client)
    assert (reply.status, reply.body) == (500, b"Internal Server Error")
    assert "KeyError" in caplog.text
