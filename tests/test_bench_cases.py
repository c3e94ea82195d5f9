"""The benchmark scripts still drive the flow as the adapters do: every case
of bench/pipeline.py answers as it should, with its events stored (no timing)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def bench_module(name: str) -> ModuleType:
    """``bench/<name>.py`` loaded as a module, the import path left as it was."""
    path = list(sys.path)
    spec = importlib.util.spec_from_file_location(f"ingest_mw_bench_{name}_under_test", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a dataclass of the script looks its module up there
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path  # a script rearranges the import path for itself
        del sys.modules[spec.name]
    return module


def asgi_status(app, scope: dict, body: bytes) -> int:
    """The status ``app`` answers an HTTP ``scope`` whose body is ``body``, all in one message."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"]


@pytest.fixture(scope="module")
def pipeline():
    return bench_module("pipeline")


def test_every_pipeline_case_answers_and_stores_what_it_expects(pipeline):
    sink = pipeline.StoringSink()
    cases = pipeline.build_cases(big=False)
    assert cases
    for case in cases:
        case.check(sink)  # SystemExit on a wrong status or number of events stored


def test_the_http_bench_builds_its_servers_apps():
    """bench/http.py's minimal app and the app with a hook that keeps nothing answer
    as ingest-mw serve would (no server started: called as ASGI apps)."""
    module = bench_module("http")
    body = b'{"message": "hello"}'
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "root_path": "",
        "headers": [
            (b"authorization", f"Bearer {module.TOKEN}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 5000),
    }

    def status_of(app, scope=scope, body=body) -> int:
        return asgi_status(app, scope, body)

    assert status_of(module.minimal_app) == 202
    assert status_of(module.dropping_app("none")) == 202
    # The lean endpoint does the checks every request of the case needs.
    lean = module.lean_app()
    assert status_of(lean) == 202
    assert status_of(lean, body=b'[{"a": 1}, {"b": 2}]') == 202
    assert status_of(lean, body=b'[{"a": 1}, 2]') == 400
    wrong_token = {**scope, "headers": [(b"authorization", b"Bearer nope"), *scope["headers"][1:]]}
    assert status_of(lean, scope=wrong_token) == 403
    not_json = {**scope, "headers": [*scope["headers"][:1], (b"content-type", b"text/plain")]}
    assert status_of(lean, scope=not_json) == 415
    assert status_of(lean, scope={**scope, "path": "/v1/x"}) == 404


def test_every_rule_by_hand_answers_as_the_better_stack_app_does():
    """bench/by_hand.py, the floor issue 13's item 8 is read against, keeps the
    rules it stands for: for each request, the status ingest_mw's own Better
    Stack app gives (as serve builds it: memory sink, no rate limit)."""
    from ingest_mw import ASGIApp, BetterStackAPI
    from ingest_mw.sinks import JSONMemorySink

    module = bench_module("by_hand")

    async def lifespan(scope, receive, send):
        raise AssertionError("no lifespan here")

    by_hand = module.by_hand_app("tok", lifespan)
    ours = ASGIApp(BetterStackAPI(["tok"], rate_limit=None), sink=JSONMemorySink())

    def status_of(app, body: bytes, headers: dict[str, str], method: str = "POST", path: str = "/mount/") -> int:
        raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        scope = {"type": "http", "method": method, "path": path, "root_path": "/mount", "headers": raw}
        scope["client"] = ("127.0.0.1", 5000)
        return asgi_status(app, scope, body)

    good = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
    deep = b'{"a": ' * 70 + b"1" + b"}" * 70
    cases = [
        (b'{"message": "one"}', good, "POST"),
        (b'[{"message": "a"}, {"message": "b"}]', good, "POST"),
        (b"[]", good, "POST"),
        (b'[{"a": 1}, 2]', good, "POST"),
        (b"[1", good, "POST"),
        (b'"text"', good, "POST"),
        (deep, good, "POST"),
        (b'{"a": 1}', {**good, "Authorization": "Bearer nope"}, "POST"),
        (b'{"a": 1}', {"Content-Type": "application/json"}, "POST"),
        (b'{"a": 1}', {**good, "Content-Type": "text/plain"}, "POST"),
        (b'{"a": 1}', {**good, "Content-Type": "Application/JSON; charset=utf-8"}, "POST"),
        (b'{"a": 1}', {**good, "Content-Length": "8", "Transfer-Encoding": "chunked"}, "POST"),
        (b'{"a": 1}', {**good, "Content-Length": "99999999999"}, "POST"),
        (b'{"a": 1}', {**good, "Content-Length": "eight"}, "POST"),
        (b'{"a": 1}', good, "GET"),
        (b"", good, "POST"),
        (b"  \n", good, "POST"),
        (b'{"a": 1}', {**good, "Authorization": "Bearer tok, Bearer tok"}, "POST"),
        (b'{"a": 1}', {**good, "Authorization": "Bearer tok, Bearer other"}, "POST"),
        (b'{"a": 1}', {**good, "Content-Type": "application/json, application/json"}, "POST"),
        (b'{"a": 1}', {**good, "Content-Encoding": "identity"}, "POST"),
        (b'{"a": 1}', {**good, "Content-Encoding": "compress"}, "POST"),
        (b'{"a": [' + b"[]," * 900_000 + b"[]]}", good, "POST"),  # over the containers cap
    ]
    statuses = [(status_of(by_hand, *case), status_of(ours, *case)) for case in cases]
    assert [mine for mine, _ in statuses] == [theirs for _, theirs in statuses]
    assert {mine for mine, _ in statuses} >= {202, 400, 403, 405, 406, 413, 415}
    assert status_of(by_hand, b"", {}, "GET", "/mount/healthz") == 200
    assert status_of(by_hand, b"{}", good, path="/mount") == status_of(ours, b"{}", good, path="/mount") == 202
