"""A Starlette app with the ingest APIs mounted at /ingest and an async storage hook.

    cd examples/starlette_app && uvicorn starlette_example:app

Better Stack clients post to /ingest/, Baselime clients to /ingest/v1/<dataset>;
GET /events shows what arrived. Events are appended to a JSON Lines file
(``EVENT_LOG``, default ``events.jsonl``) opened when the app starts and
closed when it stops.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from ingest_mw import ASGIApp, BaselimeAPI, Batch, BetterStackAPI
from ingest_mw.batch import event_json
from ingest_mw.contrib.starlette import ingest_lifespan


class EventLog:
    """An async storage hook: appends each batch to a file without blocking the event loop.

    ``open`` runs in the app's lifespan; ``close`` is called at shutdown by
    ``ingest_lifespan``, after the last request.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: Any = None
        self._lock = anyio.Lock()  # one batch's lines stay together

    async def open(self) -> None:
        self._file = await anyio.open_file(self.path, "ab")

    async def __call__(self, batch: Batch) -> None:
        head = {"received_at": batch.received_at, "api": batch.api, "source": batch.source, "dataset": batch.dataset}
        lines = []
        for event in batch.events:
            service, namespace = batch.labels(event.data)  # a Baselime event's own, else the headers'
            line = {**head, "service": service, "namespace": namespace, "dt": event.time}
            lines.append(orjson.dumps({**line, "data": orjson.Fragment(event_json(event.data))}) + b"\n")
        async with self._lock:
            await self._file.write(b"".join(lines))
            await self._file.flush()  # written before the client hears 202

    async def close(self) -> None:
        await self._file.aclose()

    async def latest(self, count: int) -> list[Any]:
        text = await anyio.Path(self.path).read_bytes()
        return [orjson.loads(line) for line in reversed(text.splitlines()[-count:])]


def create_app(path: str, tokens: dict[str, str], api_keys: dict[str, str]) -> Starlette:
    log = EventLog(path)
    ingest = ASGIApp([BetterStackAPI(tokens), BaselimeAPI(api_keys)], sink=log)

    @asynccontextmanager
    async def open_log(app: Starlette) -> AsyncIterator[None]:
        await log.open()
        yield

    async def latest_events(request: Request) -> JSONResponse:
        return JSONResponse({"events": await log.latest(20)})

    return Starlette(
        routes=[Mount("/ingest", app=ingest), Route("/events", latest_events)],
        lifespan=ingest_lifespan(ingest, lifespan=open_log),
    )


app = create_app(
    os.environ.get("EVENT_LOG", "events.jsonl"),
    tokens={"example": os.environ.get("INGEST_TOKEN", "example-token")},
    api_keys={"example": os.environ.get("INGEST_API_KEY", "example-key")},
)
