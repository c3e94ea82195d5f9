import sys
from pathlib import Path

import pytest

# Test helper modules (clients.py, ...) import as plain modules.
sys.path.insert(0, str(Path(__file__).parent))

from redis_fixture import redis_server, redis_with_password  # noqa: E402,F401  (real redis-servers)


@pytest.fixture(params=["wsgi", "asgi"])
def adapter(request):
    """The same test runs through the WSGI and the ASGI adapter."""
    return request.param


@pytest.fixture(params=["sync", "async", "sqlite"])
def sink(request):
    """The same test runs with a sync, an async and a SQLite-backed storage hook."""
    from sinks_for_tests import SINK_KINDS

    return SINK_KINDS[request.param]()
