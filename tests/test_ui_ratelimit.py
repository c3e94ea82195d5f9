"""Token guesses at the Live Tail page are throttled as ingest requests are:
every request counts per client IP before its token is looked at."""

from __future__ import annotations

import asyncio

import httpx

from ingest_mw.sinks import JSONMemorySink
from ingest_mw.ui import UIMount

TOKEN = "ui-secret"


async def host(scope, receive, send):  # the app beside the page: never reached here
    raise AssertionError("the page's paths must not reach the host app")


async def statuses(mount: UIMount, attempts: list[str], client: tuple[str, int] = ("203.0.113.7", 5000)):
    transport = httpx.ASGITransport(app=mount, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        answers = [await http.get("/ui/api/events", headers={"Authorization": f"Bearer {t}"}) for t in attempts]
    return answers


def test_guesses_past_the_limit_get_429_even_with_the_right_token():
    mount = UIMount.for_sink(host, sink=JSONMemorySink(), tokens={"ops": TOKEN}, rate_limit="3/minute")
    answers = asyncio.run(statuses(mount, ["guess-1", "guess-2", TOKEN, "guess-3", TOKEN]))
    assert [a.status_code for a in answers] == [401, 401, 200, 429, 429]
    refused = answers[3]
    assert int(refused.headers["retry-after"]) > 0
    assert refused.json() == {"message": "Too Many Requests"}
    assert refused.headers["ratelimit-limit"] == "3" and refused.headers["ratelimit-remaining"] == "0"


def test_each_client_ip_has_its_own_budget():
    mount = UIMount.for_sink(host, sink=JSONMemorySink(), tokens={"ops": TOKEN}, rate_limit="1/minute")
    first = asyncio.run(statuses(mount, ["guess", TOKEN], client=("203.0.113.7", 5000)))
    other = asyncio.run(statuses(mount, [TOKEN], client=("198.51.100.9", 5000)))
    assert [a.status_code for a in first] == [401, 429]
    assert [a.status_code for a in other] == [200]


def test_no_limit_when_none():
    mount = UIMount.for_sink(host, sink=JSONMemorySink(), tokens={"ops": TOKEN}, rate_limit=None)
    answers = asyncio.run(statuses(mount, ["guess"] * 5))
    assert {a.status_code for a in answers} == {401}
