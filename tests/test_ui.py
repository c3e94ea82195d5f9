"""The Live Tail page in a real headless Chromium, against a real ``serve`` on loopback.

Screenshots of each state are saved under pytest's temporary directory (the
path is printed: run with ``-s`` to see it).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request

import pytest
from serve_process import Server

TOKEN = "ui-test-token"
UI_TOKEN = "ui-secret"
KEY = "ui-key"
CHROMIUM = "/usr/bin/chromium"
#: Chromium's flags for a quiet, isolated run (no sandbox: CI runs as root).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def post(url: str, body: object, headers: dict[str, str]) -> int:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def served(tmp_path):
    server = Server(
        [
            "--sink",
            f"sqlite:///{tmp_path / 'ingest.db'}",
            "--token",
            f"web={TOKEN}",
            "--api-key",
            f"team={KEY}",
            "--ui-token",
            f"ops={UI_TOKEN}",
        ]
    )
    assert post(server.url, [{"message": "service started", "level": "info"}], bearer()) == 202
    assert post(server.url, [{"message": "disk full", "level": "error", "disk": "/var"}], bearer()) == 202
    assert post(server.url + "/v1/payments", [{"message": "charged", "level": "warn"}], {"x-api-key": KEY}) == 202
    yield server
    server.stop()


DATA_PATHS = [
    "/ui/api/events",
    "/ui/api/events/1",
    "/ui/api/rate",
    "/ui/api/refusals",
    "/ui/api/facets",
    "/ui/api/stream",
    "/ui/static/app.js",
]


def test_without_the_token_the_page_and_its_data_answer_401(served):
    for path in ["/ui", "/ui/", *DATA_PATHS]:
        for headers in ({}, bearer("wrong"), {"Cookie": "ingest_mw_ui=wrong"}):
            status, body, _ = get(served.url + path, headers)
            assert status == 401, (path, headers)
            assert b"disk full" not in body
    status, body, _ = get(served.url + "/ui?token=wrong")
    assert status == 401 and b'name="token"' in body  # the page asks for one
    # With it: the header, or the cookie the page sets.
    status, body, _ = get(served.url + "/ui/api/events", bearer(UI_TOKEN))
    assert status == 200 and [e["message"] for e in json.loads(body)["events"]] == [
        "charged",
        "disk full",
        "service started",
    ]
    assert get(served.url + "/ui/api/events?level=error", {"Cookie": f"ingest_mw_ui={UI_TOKEN}"})[0] == 200


def test_every_answer_of_the_page_forbids_framing_sniffing_and_foreign_scripts(served):
    # The page and its data, with the token or refused; the browser test below
    # runs the page under this policy.
    for path, headers in [("/ui/", bearer(UI_TOKEN)), ("/ui/api/events", bearer(UI_TOKEN)), ("/ui/", {})]:
        _, _, answer = get(served.url + path, headers)
        found = {name.lower(): value for name, value in answer.items()}
        assert "script-src 'self'" in found["content-security-policy"], path
        assert "frame-ancestors 'none'" in found["content-security-policy"], path
        assert (found["x-content-type-options"], found["x-frame-options"]) == ("nosniff", "DENY"), path
        assert found["referrer-policy"] == "no-referrer", path


def test_the_token_in_the_address_becomes_a_cookie(served):
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    connection.request("GET", f"/ui?token={UI_TOKEN}")
    response = connection.getresponse()
    assert response.status == 303 and response.getheader("Location") == "/ui/"
    cookie = response.getheader("Set-Cookie")
    assert cookie.startswith(f"ingest_mw_ui={UI_TOKEN};") and "HttpOnly" in cookie and "Path=/ui" in cookie


def test_the_page_is_off_without_a_ui_token(tmp_path):
    server = Server(["--sink", f"sqlite:///{tmp_path / 'ingest.db'}", "--token", TOKEN, "--api-key", KEY])
    try:
        for path in ["/ui", "/ui/api/events"]:
            status, body, _ = get(server.url + path, bearer(UI_TOKEN))
            assert status != 200 and b"Live Tail" not in body
    finally:
        server.stop()


def test_data_endpoints_filter_on_the_server(served):
    def events(query: str) -> list[str]:
        status, body, _ = get(f"{served.url}/ui/api/events?{query}", bearer(UI_TOKEN))
        assert status == 200, body
        return [e["message"] for e in json.loads(body)["events"]]

    assert events("api=baselime") == ["charged"]
    assert events("source=web&level=ERROR") == ["disk full"]
    assert events("q=FULL") == ["disk full"]
    assert events("dataset=payments") == ["charged"]
    assert events("limit=1") == ["charged"]
    first = json.loads(get(f"{served.url}/ui/api/events?limit=2", bearer(UI_TOKEN))[1])
    assert first["next"] is not None
    assert events(f"limit=2&before={first['next']}") == ["service started"]
    assert get(f"{served.url}/ui/api/events?since=tomorrow", bearer(UI_TOKEN))[0] == 400
    rate = json.loads(get(f"{served.url}/ui/api/rate?by=api", bearer(UI_TOKEN))[1])
    assert rate["bucket"] == 60 and {name: sum(counts) for name, counts in rate["series"].items()} == {
        "betterstack": 2,
        "baselime": 1,
    }
    status, body, _ = get(f"{served.url}/ui/api/rate?by=colour", bearer(UI_TOKEN))
    assert status == 400 and b"by must be one of source, api, dataset, service, not 'colour'" in body


def read_sse_events(port: int, path: str, count: int, timeout: float, after_open) -> list[dict]:
    """Open the stream, call ``after_open``, and collect ``count`` events (bounded in time)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    connection.request("GET", path, headers=bearer(UI_TOKEN))
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
    assert response.readline() == b"retry: 1000\n"
    after_open()
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    kind = None
    while len(found) < count and time.monotonic() < deadline:
        line = response.readline()
        if line.startswith(b"event: "):
            kind = line[7:].strip()
        elif line.startswith(b"data: ") and kind == b"events":
            found.extend(json.loads(line[6:])["events"])
    connection.close()
    return found


@pytest.mark.parametrize("sink", ["memory://", "jsonl"])
def test_the_stream_over_other_sinks(tmp_path, sink):
    """memory:// is browsable too (the page reads the sink object inside serve)."""
    url = sink if sink == "memory://" else f"jsonl:///{tmp_path / 'events.jsonl'}"
    server = Server(["--sink", url, "--token", TOKEN, "--api-key", KEY, "--ui-token", UI_TOKEN])
    try:
        assert post(server.url, {"message": "before", "level": "info"}, bearer()) == 202
        status, body, _ = get(server.url + "/ui/api/events", bearer(UI_TOKEN))
        assert [e["message"] for e in json.loads(body)["events"]] == ["before"]
        cursor = json.loads(body)["cursor"]

        def send() -> None:
            assert (
                post(
                    server.url, [{"message": "quiet", "level": "info"}, {"message": "loud", "level": "error"}], bearer()
                )
                == 202
            )

        found = read_sse_events(server.port, "/ui/api/stream?level=error", 1, 10, send)
        assert [e["message"] for e in found] == ["loud"]
        event_id = found[0]["id"]
        # From a cursor: what came since it, at once (a page opens its stream after its search).
        again = read_sse_events(server.port, f"/ui/api/stream?level=error&after={cursor}", 1, 10, lambda: None)
        assert [e["message"] for e in again] == ["loud"]
        status, body, _ = get(f"{server.url}/ui/api/events/{event_id}", bearer(UI_TOKEN))
        assert status == 200 and json.loads(body)["data"] == {"message": "loud", "level": "error"}
    finally:
        server.stop()


def test_serve_stops_promptly_with_a_page_open(served):
    """A stream never ends by itself; on SIGTERM the server ends it and stops at once."""
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=20)
    connection.request("GET", "/ui/api/stream", headers=bearer(UI_TOKEN))
    response = connection.getresponse()
    assert response.status == 200 and response.readline() == b"retry: 1000\n"
    started = time.monotonic()
    code, _ = served.stop(timeout=15)
    assert code == 0 and time.monotonic() - started < 5
    assert b"event: end" in response.read()  # the page is told, and opens the next stream from its cursor


@pytest.fixture
def browser_page(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium; .ci/run does)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def test_live_tail_in_a_browser(served, browser_page, tmp_path):
    expect = pytest.importorskip("playwright.sync_api").expect
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nLive Tail screenshots: {shots}")

    # Without the token: 401, and a form asking for it.
    page = browser_page.new_page()
    response = page.goto(served.url + "/ui")
    assert response.status == 401
    assert page.locator("input[name=token]").is_visible()
    page.screenshot(path=str(shots / "0-no-token.png"))

    # With it: the page, the token gone from the address.
    page.goto(f"{served.url}/ui?token={UI_TOKEN}")
    assert page.url == served.url + "/ui/"
    page.wait_for_selector("#status.live", timeout=10_000)
    assert page.locator("#events tr").count() == 3

    # Live: an event posted over HTTP shows within 2 s.
    marker = f"live event {time.time_ns()}"
    posted = time.monotonic()
    assert post(served.url, {"message": marker, "level": "info", "request_id": "r-42"}, bearer()) == 202
    page.locator("#events tr", has_text=marker).wait_for(timeout=2000)
    print(f"live event shown {time.monotonic() - posted:.2f} s after its 202")
    assert page.locator("#events tr").first.inner_text().count(marker) == 1  # newest on top
    page.screenshot(path=str(shots / "1-live.png"))

    # A filter, applied on the server: only errors, old and new.
    page.select_option("select[name=level]", "error")
    expect(page.locator("#events tr")).to_have_count(1)
    page.wait_for_selector("#status.live")
    assert (
        post(
            served.url,
            [{"message": "still fine", "level": "info"}, {"message": "out of memory", "level": "error"}],
            bearer(),
        )
        == 202
    )
    page.locator("#events tr", has_text="out of memory").wait_for(timeout=2000)
    rows = page.locator("#events tr").all_inner_texts()
    assert len(rows) == 2 and all("ERROR" in row.upper() for row in rows)
    assert not any("still fine" in row for row in rows)
    page.screenshot(path=str(shots / "2-filtered.png"))

    # Open an event: its whole stored JSON.
    page.locator("#events tr", has_text="disk full").click()
    page.wait_for_selector("#detail:not([hidden])")
    detail = page.locator("#detail-json").inner_text()
    assert json.loads(detail) == {"message": "disk full", "level": "error", "disk": "/var"}
    assert "betterstack" in page.locator("#detail-meta").inner_text()
    page.screenshot(path=str(shots / "3-event.png"))

    # The chart: every event so far, by source.
    page.click("#clear")
    expect(page.locator("#events tr")).to_have_count(6)
    expect(page.locator("#chart rect").first).to_be_attached()
    # The chart also redraws on its own (every 5 s once events came): the 6 show by the next one at the latest.
    expect(page.locator("#chart-title")).to_have_text(re.compile(r"6 in range$"), use_inner_text=True, timeout=8000)
    assert page.locator("#legend").inner_text().split() == ["team", "web"]
    page.select_option("#chart-by", "api")
    expect(page.locator("#legend")).to_contain_text("betterstack", use_inner_text=True)
    page.screenshot(path=str(shots / "4-chart.png"))
    page.locator(".chart-panel").screenshot(path=str(shots / "4-chart-panel.png"))

    # Pause holds new events back; resume shows them.
    page.click("#pause")
    assert post(served.url, {"message": "while paused", "level": "info"}, bearer()) == 202
    page.wait_for_selector("#pending:not([hidden])", timeout=2000)
    assert page.locator("#events tr", has_text="while paused").count() == 0
    page.click("#pause")
    page.locator("#events tr", has_text="while paused").wait_for(timeout=2000)


def test_the_page_under_a_host_apps_prefix(tmp_path):
    """LiveTailApp mounted by a host (Starlette's Mount) at /admin/tail: links, cookie and redirect follow."""
    import threading

    import uvicorn
    from serve_process import free_port
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from ingest_mw import ASGIApp, BetterStackAPI
    from ingest_mw.read import reader_for
    from ingest_mw.sinks import SQLiteSink
    from ingest_mw.ui import LiveTailApp

    sink = SQLiteSink(tmp_path / "host.db")
    host = Starlette(
        routes=[
            Mount("/ingest", app=ASGIApp(BetterStackAPI({"web": TOKEN}), sink=sink)),
            Mount("/admin/tail", app=LiveTailApp(reader_for(sink), tokens={"ops": UI_TOKEN})),
        ]
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(host, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        assert post(base + "/ingest/", {"message": "from the host", "level": "info"}, bearer()) == 202
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", f"/admin/tail/?token={UI_TOKEN}")
        response = connection.getresponse()
        assert response.status == 303 and response.getheader("Location") == "/admin/tail/"
        assert "Path=/admin/tail;" in response.getheader("Set-Cookie")
        status, page, _ = get(base + "/admin/tail/", {"Cookie": f"ingest_mw_ui={UI_TOKEN}"})
        assert status == 200
        assert b'src="/admin/tail/static/app.js"' in page and b'data-base="/admin/tail"' in page
        status, body, _ = get(base + "/admin/tail/api/events", bearer(UI_TOKEN))
        assert [e["message"] for e in json.loads(body)["events"]] == ["from the host"]
        assert get(base + "/admin/tail/api/events")[0] == 401
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sink.close()
