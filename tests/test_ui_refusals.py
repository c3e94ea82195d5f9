"""The Live Tail page's refusals chart: requests and events refused per minute,
from the metrics of a real ``serve`` on loopback, in its data endpoint and in
a real headless Chromium (screenshots under pytest's temporary directory)."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request

import pytest
from serve_process import Server
from test_ui import UI_TOKEN, bearer, browser_page, get  # noqa: F401  (browser_page: a fixture)

TOKEN = "refusals-token"
KEY = "refusals-key"


def post_status(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def serve(tmp_path, *extra: str) -> Server:
    return Server(
        [
            "--sink",
            f"sqlite:///{tmp_path / 'ingest.db'}",
            "--token",
            f"web={TOKEN}",
            "--api-key",
            f"team={KEY}",
            "--ui-token",
            UI_TOKEN,
            *extra,
        ]
    )


def post_too_large(port: int) -> int:
    """A request declaring a body past Better Stack's 20 MiB: refused on its Content-Length, before any body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("POST", "/")
        for name, value in {**bearer(TOKEN), "Content-Type": "application/json", "Content-Length": "30000000"}.items():
            connection.putheader(name, value)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def refuse_some(server: Server) -> None:
    """No token, a wrong token, too large, invalid, one stored event, and one refused beside a stored one."""
    event = b'{"message": "fine"}'
    assert post_status(server.url, event, {}) == 403  # Better Stack's answer to both
    assert post_status(server.url, event, bearer("wrong")) == 403
    assert post_too_large(server.port) == 413
    assert post_status(server.url, b'[{"message": "kept"}, 42]', bearer(TOKEN)) == 400
    assert post_status(server.url, event, bearer(TOKEN)) == 202  # stored: not a refusal
    # Baselime keeps the objects beside a refused element: a 400, one event stored, one refused.
    assert post_status(server.url + "/v1/payments", b'[{"message": "kept"}, 7]', {"x-api-key": KEY}) == 400


EXPECTED = {
    "requests 403 credentials": 2,
    "requests 413 too large": 1,
    "requests 400 invalid": 2,
    "events not_an_object": 1,
}


def refusals(server: Server, query: str = "") -> dict:
    status, body, _ = get(f"{server.url}/ui/api/refusals{query}", bearer(UI_TOKEN))
    assert status == 200, body
    return json.loads(body)


def totals(chart: dict) -> dict[str, int]:
    return {name: sum(counts) for name, counts in chart["series"].items()}


def wait_for_totals(server: Server, expected: dict[str, int], timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        chart = refusals(server)
        if {k: v for k, v in totals(chart).items() if k in expected} == expected or time.monotonic() > deadline:
            return chart
        time.sleep(0.2)


def test_the_data_endpoint_counts_refusals_per_minute(tmp_path):
    server = serve(tmp_path)
    try:
        before = refusals(server)
        assert before["available"] is True and before["scope"] == "process"
        assert before["bucket"] == 60 and before["series"] == {}
        refuse_some(server)
        chart = wait_for_totals(server, EXPECTED)
        counted = totals(chart)
        assert {name: counted.get(name) for name in EXPECTED} == EXPECTED
        assert set(counted) == set(EXPECTED)  # the 202 is not among them
        # A range that ended before the server started has none.
        assert refusals(server, "?since=2020-01-01T00:00:00Z&until=2020-01-01T01:00:00Z")["series"] == {}
        assert get(f"{server.url}/ui/api/refusals", bearer("wrong"))[0] == 401
    finally:
        server.stop()


def test_without_metrics_refusals_are_not_available(tmp_path):
    server = serve(tmp_path, "--no-metrics")
    try:
        refuse_some(server)
        chart = refusals(server)
        assert chart["available"] is False and "series" not in chart  # not zeros
    finally:
        server.stop()


def test_under_several_workers_the_refusals_are_the_whole_servers(tmp_path):
    server = serve(tmp_path, "--workers", "2")
    try:
        for _ in range(3):  # new connections: the kernel spreads them over both workers
            refuse_some(server)
        chart = wait_for_totals(server, {name: 3 * n for name, n in EXPECTED.items()})
        assert chart["scope"] == "server"
        assert {name: totals(chart).get(name) for name in EXPECTED} == {name: 3 * n for name, n in EXPECTED.items()}
    finally:
        server.stop()


def test_refusals_in_the_chart_in_a_browser(tmp_path, browser_page):  # noqa: F811
    expect = pytest.importorskip("playwright.sync_api").expect
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nrefusals screenshots: {shots}")
    server = serve(tmp_path)
    try:
        page = browser_page.new_page()
        page.goto(f"{server.url}/ui?token={UI_TOKEN}")
        page.wait_for_selector("#status.live", timeout=10_000)
        expect(page.locator("#refusals-title")).to_contain_text("in range", use_inner_text=True)
        assert page.locator("#refusals-title").inner_text().startswith("Refused per minute · 0 in range")
        refuse_some(server)
        page.click("button[type=submit]")  # Apply: the charts are read again
        expect(page.locator("#refusals-legend")).to_contain_text("403", use_inner_text=True, timeout=10_000)
        legend = page.locator("#refusals-legend").inner_text()
        assert all(name in legend for name in EXPECTED)
        assert page.locator("#refusals rect").count() >= 2
        assert "6 in range" in page.locator("#refusals-title").inner_text()
        page.locator(".chart-panel").screenshot(path=str(shots / "refusals-panel.png"))
        page.screenshot(path=str(shots / "refusals-page.png"))
    finally:
        server.stop()


def test_the_page_says_when_refusals_are_not_available(tmp_path, browser_page):  # noqa: F811
    expect = pytest.importorskip("playwright.sync_api").expect
    server = serve(tmp_path, "--no-metrics")
    try:
        page = browser_page.new_page()
        page.goto(f"{server.url}/ui?token={UI_TOKEN}")
        expect(page.locator("#refusals-title")).to_contain_text("not available", use_inner_text=True)
        assert page.locator("#refusals rect").count() == 0
        page.locator(".chart-panel").screenshot(path=str(tmp_path / "refusals-unavailable.png"))
    finally:
        server.stop()


def test_the_history_keeps_what_the_counters_grew_by_per_minute():
    """RefusalHistory over a counter read of its own (the metrics' stand-in is a dict the test grows)."""
    from ingest_mw.ui.refusals import RefusalHistory

    counters: dict[str, dict[str, int]] | None = {"requests": {"429": 5}, "events": {}}
    history = RefusalHistory(lambda: counters, minutes=2)
    history.sample(now=600.0)  # the baseline: the 5 were counted before, when is unknown
    assert history.describe()["available"] is True and history.describe()["since"] == 600.0
    counters = {"requests": {"429": 7, "503": 1}, "events": {"invalid_json": 3}}
    history.sample(now=610.0)
    history.sample(now=650.0)  # nothing new
    counters = {"requests": {"429": 8, "503": 1}, "events": {"invalid_json": 3}}
    history.sample(now=665.0)
    assert sorted(history.counts(0, 10_000)) == [
        (600, "events invalid_json", 3),
        (600, "requests 429 rate limit", 2),
        (600, "requests 503 overload or storage", 1),
        (660, "requests 429 rate limit", 1),
    ]
    assert history.counts(660, 720) == [(660, "requests 429 rate limit", 1)]
    counters = {"requests": {"429": 1}, "events": {}}  # counters reset (a new metrics directory): no negatives
    history.sample(now=730.0)
    counters = {"requests": {"429": 2}, "events": {}}
    history.sample(now=790.0)
    assert history.counts(0, 10_000)[-1] == (780, "requests 429 rate limit", 1)
    assert {minute for minute, _, _ in history.counts(0, 10_000)} == {660, 780}  # two minutes kept at most
    counters = None
    history.sample(now=800.0)
    assert history.describe()["available"] is False
