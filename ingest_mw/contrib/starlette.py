"""Starlette (and FastAPI) integration: close a mounted ingest app's sink with the host.

.. code-block:: python

    ingest = ASGIApp([BetterStackAPI(tokens), BaselimeAPI(keys)], sink=store)
    app = Starlette(
        routes=[Mount("/ingest", app=ingest)],
        lifespan=ingest_lifespan(ingest, lifespan=own_lifespan),
    )

Mounting needs nothing but :class:`~ingest_mw.asgi.ASGIApp`. Lifespan does:
Starlette's ``Mount`` never passes lifespan events to the app it mounts, so
the ingest app cannot close its sink at shutdown by itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

from ..asgi import ASGIApp

__all__ = ["Lifespan", "ingest_lifespan"]

#: Starlette's ``lifespan=``: called with the app, entered for the app's life.
Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def ingest_lifespan(*ingest: ASGIApp, lifespan: Lifespan | None = None) -> Lifespan:
    """The host's ``lifespan`` (if any) with the ``ingest`` apps' sinks closed at shutdown.

    The sinks are closed before the host's own lifespan ends, so a sink may
    use what that lifespan opened (a connection pool, a client) until the
    end. Whatever the host lifespan yields (Starlette's state) is passed on.
    """

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        async with lifespan(app) if lifespan is not None else nullcontext() as state:
            try:
                yield state
            finally:
                for each in ingest:
                    await each.aclose()

    return run
