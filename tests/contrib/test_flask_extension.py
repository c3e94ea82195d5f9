"""ingest_mw.contrib.flask: the IngestMW extension on real Flask apps, through webtest."""

import re

import pytest
import webtest
from flask import Flask, current_app

from ingest_mw import Batch, MemorySink, WSGIMiddleware
from ingest_mw.contrib.config import ConfigError
from ingest_mw.contrib.flask import IngestMW
from ingest_mw.logs import AccessLogObserver
from ingest_mw.observe import Observation, Observer

BETTERSTACK = {"Authorization": "Bearer t", "Content-Type": "application/json"}
BASELIME = {"x-api-key": "k", "Content-Type": "application/json"}
CREDENTIALS = {"INGEST_MW_BETTERSTACK_TOKENS": {"web": "t"}, "INGEST_MW_BASELIME_API_KEYS": {"team": "k"}}

#: Batches stored by ``record``, the hook named by its dotted path below.
RECORDED: list[tuple[str, Batch]] = []


def record(batch: Batch) -> None:
    RECORDED.append((current_app.name, batch))  # the extension provides an app context


def make_app(**config: object) -> Flask:
    app = Flask("host")
    app.config.update(CREDENTIALS, **config)
    app.before_request(lambda: "a before_request hook answered")  # must never see ingest requests

    @app.post("/ingest-ish")
    def own_view() -> str:
        return "the host's own view"

    return app


def test_both_apis_are_mounted_under_the_default_prefix() -> None:
    sink = MemorySink()
    app = make_app(INGEST_MW_STORAGE=sink)
    IngestMW(app)
    client = webtest.TestApp(app)
    assert client.post("/ingest/", b'{"message": "A"}', headers=BETTERSTACK).status_int == 202
    assert client.post("/ingest/v1/logs", b'[{"message": "B"}]', headers=BASELIME).status_int == 202
    assert [(b.api, b.source, b.dataset) for b in sink.batches] == [
        ("betterstack", "web", None),
        ("baselime", "team", "logs"),
    ]
    assert client.post("/ingest-ish").text == "a before_request hook answered"  # the rest is Flask's
    assert client.post("/ingest/", b"{", headers=BETTERSTACK, status=406).text == "Couldn't parse JSON content."
    assert client.post("/ingest/", b"{}", headers={**BETTERSTACK, "Authorization": "Bearer x"}, status=403)


def test_init_app_reads_app_config_and_keywords_win() -> None:
    RECORDED.clear()
    ingest = IngestMW(prefix="/logs/intake", apis=["baselime"])
    app = make_app(INGEST_MW_STORAGE=f"{__name__}:record", INGEST_MW_PREFIX="/ignored", INGEST_MW_APIS=["betterstack"])
    ingest.init_app(app)
    state = app.extensions["ingest_mw"]
    assert isinstance(state, WSGIMiddleware) and state.prefix == "/logs/intake"
    assert [api.name for api in state.ingest.routes.apis] == ["baselime"]
    client = webtest.TestApp(app)
    client.post("/logs/intake/v1/web", b'[{"message": "A"}]', headers=BASELIME, status=202)
    assert [(name, batch.events[0].data) for name, batch in RECORDED] == [("host", {"message": "A"})]


def test_rate_limit_from_app_config() -> None:
    app = make_app(INGEST_MW_STORAGE="memory://", INGEST_MW_BASELIME_RATE_LIMIT="1/minute")
    IngestMW(app)
    client = webtest.TestApp(app, extra_environ={"REMOTE_ADDR": "192.0.2.1"})
    client.post("/ingest/v1/web", b"[{}]", headers=BASELIME, status=202)
    refused = client.post("/ingest/v1/web", b"[{}]", headers=BASELIME, status=429)
    assert refused.json["message"] == "Too Many Requests"
    assert refused.headers["RateLimit-Limit"] == "1"


def test_an_async_hook_runs_in_the_app_context_too() -> None:
    seen = []

    async def store(batch: Batch) -> None:
        seen.append((current_app.name, len(batch.events)))

    app = make_app()
    IngestMW(app, storage=store)
    webtest.TestApp(app).post("/ingest/", b'[{"a": 1}, {"a": 2}]', headers=BETTERSTACK, status=202)
    assert seen == [("host", 2)]


def test_the_storage_hook_is_closed_through_the_state() -> None:
    sink = MemorySink()
    closed = []
    sink.close = lambda: closed.append(True)  # type: ignore[method-assign]
    app = make_app()
    IngestMW(app, storage=sink)
    app.extensions["ingest_mw"].ingest.close()
    assert closed == [True]


@pytest.mark.parametrize(
    ("config", "options", "message"),
    [
        ({}, {}, "app.config['INGEST_MW_STORAGE'] is not set: give a function taking a Batch"),
        (
            {"INGEST_MW_STORGE": "x:y"},
            {},
            "app.config['INGEST_MW_STORGE'] is not an ingest_mw setting; did you mean app.config['INGEST_MW_STORAGE']?",
        ),
        ({}, {"storage": "nowhere:store"}, "IngestMW(storage=...) = 'nowhere:store' cannot be loaded"),
        (
            {"INGEST_MW_STORAGE": "memory://", "INGEST_MW_PREFIX": "/"},
            {},
            "app.config['INGEST_MW_PREFIX'] = '/': give a path such as '/ingest'",
        ),
        (
            {"INGEST_MW_STORAGE": "memory://", "INGEST_MW_BASELIME_API_KEYS": None},
            {},
            "app.config['INGEST_MW_BASELIME_API_KEYS'] is not set",
        ),
    ],
)
def test_wrong_configuration_says_what_to_fix(config: dict, options: dict, message: str) -> None:
    app = make_app(**config)
    with pytest.raises(ConfigError) as raised:
        IngestMW(app, **options)
    assert message in str(raised.value)
    assert "ingest_mw" not in app.extensions


def test_an_app_is_set_up_once() -> None:
    app = make_app(INGEST_MW_STORAGE="memory://")
    ingest = IngestMW(app)
    with pytest.raises(RuntimeError, match="already set up"):
        ingest.init_app(app)


def test_the_new_sink_urls_are_storage_settings(postgres_server, pg_table, redis_server) -> None:
    import json

    import psycopg
    import redis

    for url in (f"{postgres_server.url}?table={pg_table}", f"{redis_server.url}?stream=flask:events"):
        app = make_app(INGEST_MW_STORAGE=url, INGEST_MW_APIS=["betterstack"])
        IngestMW(app)
        assert webtest.TestApp(app).post("/ingest/", b'{"message": "M"}', headers=BETTERSTACK).status_int == 202
    with psycopg.connect(postgres_server.url) as connection:
        assert connection.execute(f"SELECT source, data FROM {pg_table}").fetchall() == [("web", {"message": "M"})]
    ((_, fields),) = redis.Redis.from_url(redis_server.url, decode_responses=True).xrange("flask:events")
    assert (fields["source"], json.loads(fields["data"])) == ("web", {"message": "M"})


def test_a_sink_url_in_an_error_never_shows_its_password() -> None:
    app = make_app(INGEST_MW_STORAGE="redis://:pw-s3cret@h:6379/0?maxlen=-1")
    with pytest.raises(ConfigError) as raised:
        IngestMW(app)
    assert "app.config['INGEST_MW_STORAGE']" in str(raised.value) and "pw-s3cret" not in str(raised.value)


#: What ``Kept``, the observer named by its dotted path below, was told.
OBSERVED: list[tuple[str, int, int]] = []


class Kept:
    """An observer (duck-typed: no base class needed)."""

    def started(self, seen: object) -> None: ...

    def received(self, seen: object, token: object) -> None: ...

    def finished(self, seen: Observation, token: object) -> None:
        OBSERVED.append((seen.api, seen.status, seen.events_accepted))


def test_the_observer_setting_reaches_the_flow() -> None:
    OBSERVED.clear()
    app = make_app(INGEST_MW_STORAGE=MemorySink(), INGEST_MW_OBSERVER=[f"{__name__}:Kept", AccessLogObserver()])
    IngestMW(app)
    client = webtest.TestApp(app)
    client.post("/ingest/", b'[{"message": "A"}, {"message": "B"}]', headers=BETTERSTACK, status=202)
    client.post("/ingest/v1/logs", b"[{}]", headers={**BASELIME, "x-api-key": "no"}, status=401)
    assert OBSERVED == [("betterstack", 202, 2), ("baselime", 401, 0)]


@pytest.mark.parametrize(
    ("observer", "message"),
    [
        ("no.such.module:Observer", "INGEST_MW_OBSERVER'] = 'no.such.module:Observer' cannot be loaded"),
        (print, "is not an observer: give an ingest_mw.observe.Observer"),
    ],
)
def test_a_wrong_observer_setting_says_what_to_fix(observer: object, message: str) -> None:
    app = make_app(INGEST_MW_STORAGE=MemorySink(), INGEST_MW_OBSERVER=observer)
    with pytest.raises(ConfigError, match=re.escape(message)):
        IngestMW(app)


def test_otlp_is_served_beside_baselime_when_named_in_apis() -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
    )

    sink = MemorySink()
    app = make_app(INGEST_MW_STORAGE=sink, INGEST_MW_APIS=["betterstack", "baselime", "otlp"])
    IngestMW(app)
    client = webtest.TestApp(app)
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "from OTLP"
    otlp = {"Authorization": "Bearer t", "Content-Type": "application/x-protobuf"}
    reply = client.post("/ingest/otlp/v1/logs", request.SerializeToString(), headers=otlp)
    assert reply.status_int == 200
    assert not ExportLogsServiceResponse.FromString(reply.body).HasField("partial_success")
    assert client.post("/ingest/v1/logs", b'[{"message": "B"}]', headers=BASELIME).status_int == 202
    assert [(b.api, b.source, b.events[0].data.get("body")) for b in sink.batches] == [
        ("otlp", "web", "from OTLP"),
        ("baselime", "team", None),
    ]


class Watching(Observer):
    """Records what the glue tells it it observes."""

    told: list[object] = []

    def observes(self, apis) -> None:  # type: ignore[no-untyped-def]
        Watching.told.extend(apis)


def test_the_observer_is_told_the_apis_the_settings_built() -> None:
    # So that the Prometheus observer's in-flight gauges read the admission
    # the settings made (MAX_REQUESTS), not the process's default one.
    Watching.told = []
    app = make_app(INGEST_MW_STORAGE=MemorySink(), INGEST_MW_MAX_REQUESTS=5, INGEST_MW_OBSERVER=f"{__name__}:Watching")
    IngestMW(app)
    assert {api.name for api in Watching.told} == {"betterstack", "baselime"}  # type: ignore[attr-defined]
    assert {api.admission.requests.size for api in Watching.told} == {5}  # type: ignore[attr-defined]
