"""Run the example project's tests with plain pytest (no pytest-django).

Django is set up with the project's own settings (examples/conftest.py has
put the project on ``sys.path``); the database is Django's in-memory test
database, shared by every thread, so the ASGI handler's worker threads see it.
"""

import asyncio
import os
from collections.abc import Callable, Iterator

import django
import pytest

os.environ["DJANGO_SETTINGS_MODULE"] = "exampleproject.settings"
django.setup()

#: ``post(path, body, headers)`` -> ``(status, headers with lower-case names, body)``.
Post = Callable[[str, bytes, dict[str, str]], tuple[int, dict[str, str], bytes]]  # also in the tests


@pytest.fixture(scope="session")
def test_database() -> Iterator[None]:
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    name = connection.creation.create_test_db(verbosity=0)
    yield
    connection.creation.destroy_test_db(name, verbosity=0)
    teardown_test_environment()


@pytest.fixture
def db(test_database: None) -> Iterator[None]:
    """An empty event table for each test."""
    from eventlog.models import LogEvent

    yield
    LogEvent.objects.all().delete()


@pytest.fixture(params=["wsgi", "asgi"])
def post(request: pytest.FixtureRequest, db: None) -> Post:
    """POST through Django's WSGI handler (webtest) or its ASGI handler (httpx)."""
    if request.param == "wsgi":
        import webtest
        from exampleproject.wsgi import application

        app = webtest.TestApp(application)

        def wsgi_post(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            response = app.post(path, body, headers=headers, expect_errors=True)
            return response.status_int, {k.lower(): v for k, v in response.headers.items()}, response.body

        return wsgi_post

    import httpx
    from exampleproject.asgi import application as asgi_application

    def asgi_post(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=asgi_application)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.post(path, content=body, headers=headers)

        response = asyncio.run(send())
        return response.status_code, dict(response.headers), response.content

    return asgi_post
