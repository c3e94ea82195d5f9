"""The Starlette example end to end through ASGI (httpx), lifespan included:
both APIs under /ingest/, the async hook, and what it refuses."""

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from starlette_example import create_app

BETTERSTACK = {"Authorization": "Bearer t", "Content-Type": "application/json"}
BASELIME = {"x-api-key": "k", "Content-Type": "application/json"}


def run(path: Path, scenario: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    """Run ``scenario`` against the app between its start-up and shutdown."""
    app = create_app(str(path), tokens={"web": "t"}, api_keys={"team": "k"})

    async def main() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                await scenario(client)

    asyncio.run(main())


def test_both_apis_store_through_the_async_hook(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.post("/ingest/", content=b'{"message": "A"}', headers=BETTERSTACK)
        assert (response.status_code, response.content) == (202, b"")
        response = await client.post("/ingest/v1/web", content=b'[{"message": "B"}]', headers=BASELIME)
        assert (response.status_code, response.json()) == (202, {"message": "Request Accepted"})
        events = (await client.get("/events")).json()["events"]
        assert [(e["api"], e["source"], e["dataset"], e["data"]) for e in events] == [
            ("baselime", "team", "web", {"message": "B"}),
            ("betterstack", "web", None, {"message": "A"}),
        ]

    run(tmp_path / "events.jsonl", scenario)
    assert len((tmp_path / "events.jsonl").read_bytes().splitlines()) == 2


def test_wrong_credentials_and_bad_bodies_are_refused(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.post("/ingest/", content=b"{}", headers={**BETTERSTACK, "Authorization": "Bearer x"})
        assert (response.status_code, response.content) == (403, b"Unauthorized")
        response = await client.post("/ingest/v1/web", content=b"[{}]", headers={**BASELIME, "x-api-key": "x"})
        assert (response.status_code, response.json()["message"]) == (401, "Unauthorised")
        response = await client.post("/ingest/", content=b"[{", headers=BETTERSTACK)
        assert response.status_code == 406
        response = await client.post("/ingest/v1/web", content=b"[{},", headers=BASELIME)
        assert (response.status_code, response.json()["message"]) == (400, "Bad Request")

    run(tmp_path / "events.jsonl", scenario)
    assert (tmp_path / "events.jsonl").read_bytes() == b""


def test_events_lists_each_stored_line_whole(tmp_path: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        body = b'[{"message": "B", "namespace": "own"}]'
        await client.post("/ingest/v1/web", content=body, headers={**BASELIME, "x-service": "svc"})
        (event,) = (await client.get("/events")).json()["events"]
        assert set(event) == {"received_at", "dt", "api", "source", "dataset", "service", "namespace", "data"}
        assert (event["service"], event["namespace"], event["data"]) == (
            "svc",
            "own",
            {"message": "B", "namespace": "own"},
        )

    run(tmp_path / "events.jsonl", scenario)
