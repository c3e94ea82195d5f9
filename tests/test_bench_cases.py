"""The benchmark scripts still drive the flow as the adapters do: every case
of bench/pipeline.py answers as it should, with its events stored (no timing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PIPELINE = Path(__file__).resolve().parent.parent / "bench" / "pipeline.py"


@pytest.fixture(scope="module")
def pipeline():
    path = list(sys.path)
    spec = importlib.util.spec_from_file_location("ingest_mw_bench_pipeline_under_test", PIPELINE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path  # the script rearranges the import path for itself
    return module


def test_every_pipeline_case_answers_and_stores_what_it_expects(pipeline):
    sink = pipeline.StoringSink()
    cases = pipeline.build_cases(big=False)
    assert cases
    for case in cases:
        case.check(sink)  # SystemExit on a wrong status or number of events stored


def test_the_http_bench_builds_its_servers_apps():
    """bench/http.py's minimal app and the app with a hook that keeps nothing answer
    as ingest-mw serve would (no server started: called as ASGI apps)."""
    import asyncio

    path = list(sys.path)
    spec = importlib.util.spec_from_file_location("ingest_mw_bench_http_under_test", PIPELINE.with_name("http.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path
        del sys.modules[spec.name]
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
        sent = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        asyncio.run(app(scope, receive, send))
        return sent[0]["status"]

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
