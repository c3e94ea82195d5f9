"""Django's ``INGEST_MW["STORAGE"]`` takes the PostgreSQL and Redis Streams sink URLs,
through both of Django's handlers, into a real server of each (the fixtures of tests/)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

sys.path.insert(0, str(Path(__file__).parents[2] / "tests"))

from postgres_fixture import pg_table, postgres_server  # noqa: E402,F401
from redis_fixture import redis_server  # noqa: E402,F401

BETTERSTACK = {"Authorization": "Bearer example-token", "Content-Type": "application/json"}


def test_a_postgresql_url(post, postgres_server, pg_table) -> None:  # noqa: F811
    import psycopg

    storage = {**settings.INGEST_MW, "MODEL": None, "STORAGE": f"{postgres_server.url}?table={pg_table}"}
    with override_settings(INGEST_MW=storage):
        assert post("/ingest/", b'[{"message": "to postgres"}]', BETTERSTACK)[0] == 202
    with psycopg.connect(postgres_server.url) as connection:
        assert connection.execute(f"SELECT api, data FROM {pg_table}").fetchall() == [
            ("betterstack", {"message": "to postgres"})
        ]


def test_a_redis_stream_url(post, redis_server) -> None:  # noqa: F811
    import redis

    storage = {**settings.INGEST_MW, "MODEL": None, "STORAGE": f"{redis_server.url}?stream=django:events"}
    with override_settings(INGEST_MW=storage):
        assert post("/ingest/", b'[{"message": "to a stream"}]', BETTERSTACK)[0] == 202
    ((_, fields),) = redis.Redis.from_url(redis_server.url, decode_responses=True).xrange("django:events")
    assert json.loads(fields["data"]) == {"message": "to a stream"}


def test_a_wrong_url_stops_start_up_naming_the_setting_without_the_password() -> None:
    from django.apps import AppConfig
    from django.core.exceptions import ImproperlyConfigured

    from ingest_mw.contrib.django import conf

    storage = {
        "APIS": ["betterstack"],
        "BETTERSTACK_TOKENS": ["t"],
        "STORAGE": "postgresql://u:pw-s3cret@h/db?table=a-b",
    }
    app = AppConfig.create("ingest_mw.contrib.django")
    with override_settings(INGEST_MW=storage), pytest.raises(ImproperlyConfigured) as raised:
        app.ready()
    assert "INGEST_MW['STORAGE'] = 'postgresql://u:***@h/db?table=a-b'" in str(raised.value)
    assert "table='a-b'" in str(raised.value) and "pw-s3cret" not in str(raised.value)
    conf.endpoint()  # the project's own settings are back
