"""ingest_mw.contrib.starlette: ASGIApp mounted in a Starlette app, its sink
closed with the app, around the host's own lifespan."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from ingest_mw import ASGIApp, BaselimeAPI, BetterStackAPI, MemorySink
from ingest_mw.contrib.starlette import ingest_lifespan


class ClosingSink(MemorySink):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    async def close(self) -> None:
        self.log.append("sink closed")


def test_mounted_apis_serve_and_the_sink_closes_before_the_host_lifespan_ends() -> None:
    log: list[str] = []
    sink = ClosingSink(log)
    ingest = ASGIApp([BetterStackAPI(["t"]), BaselimeAPI(["k"])], sink=sink)

    @asynccontextmanager
    async def host_lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        log.append("host started")
        yield {"greeting": "hello"}
        log.append("host stopped")

    app = Starlette(
        routes=[Mount("/api/ingest", app=ingest)],
        lifespan=ingest_lifespan(ingest, lifespan=host_lifespan),
    )

    async def main() -> None:
        async with app.router.lifespan_context(app) as state:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                headers = {"Authorization": "Bearer t", "Content-Type": "application/json"}
                assert (await client.post("/api/ingest/", content=b"{}", headers=headers)).status_code == 202
                headers = {"x-api-key": "k", "Content-Type": "application/json"}
                assert (await client.post("/api/ingest/v1/web", content=b"[{}]", headers=headers)).status_code == 202
                assert (await client.post("/api/ingest/v1/", content=b"[{}]", headers=headers)).status_code == 400
            assert state == {"greeting": "hello"}  # the host's state passes through
            assert log == ["host started"]

    asyncio.run(main())
    assert log == ["host started", "sink closed", "host stopped"]
    assert [batch.api for batch in sink.batches] == ["betterstack", "baselime"]


def test_without_a_host_lifespan_the_sinks_still_close() -> None:
    log: list[str] = []
    first, second = (
        ASGIApp(BetterStackAPI(["t"]), sink=ClosingSink(log)),
        ASGIApp(BaselimeAPI(["k"]), sink=ClosingSink(log)),
    )
    app = Starlette(routes=[Mount("/a", app=first), Mount("/b", app=second)], lifespan=ingest_lifespan(first, second))

    async def main() -> None:
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(main())
    assert log == ["sink closed", "sink closed"]


def test_otlp_mounted_in_starlette_answers_in_the_request_encoding() -> None:
    from google.protobuf.json_format import Parse
    from google.rpc.status_pb2 import Status

    from ingest_mw import OTLPLogsAPI

    sink = MemorySink()
    ingest = ASGIApp([OTLPLogsAPI({"web": "t"})], sink=sink)
    app = Starlette(routes=[Mount("/api/ingest", app=ingest)], lifespan=ingest_lifespan(ingest))
    body = b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "hi"}}]}]}]}'

    async def run() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            headers = {"Content-Type": "application/json", "Authorization": "Bearer t"}
            stored = await client.post("/api/ingest/v1/logs", content=body, headers=headers)
            refused = await client.post("/api/ingest/v1/logs", content=body, headers={**headers, "Authorization": "x"})
        return stored, refused

    stored, refused = asyncio.run(run())
    assert (stored.status_code, stored.headers["content-type"], stored.content) == (200, "application/json", b"{}")
    assert refused.status_code == 401
    assert "Bearer" in Parse(refused.content, Status()).message
    assert [(b.api, b.source, b.events[0].data["body"]) for b in sink.batches] == [("otlp", "web", "hi")]
