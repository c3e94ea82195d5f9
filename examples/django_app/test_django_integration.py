"""ingest_mw.contrib.django itself, on the example project's Django set-up
(one Django configuration per test process): mounting under any prefix,
middleware that must not interfere, the installable app, the model sink and
the start-up validation."""

from collections.abc import Callable
from datetime import UTC, datetime

import orjson
import pytest
from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import Client, modify_settings, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import include, path, reverse
from eventlog.models import LogEvent
from prometheus_client import CollectorRegistry

from ingest_mw import Batch, Event
from ingest_mw.contrib.django import conf
from ingest_mw.contrib.django.sink import ModelSink
from ingest_mw.metrics import PrometheusObserver

Post = Callable[[str, bytes, dict[str, str]], tuple[int, dict[str, str], bytes]]  # the post fixture
BETTERSTACK = {"Authorization": "Bearer example-token", "Content-Type": "application/json"}
BASELIME = {"x-api-key": "example-key", "Content-Type": "application/json"}

# This module is also a URLconf: the ingest URLs two includes deep.
urlpatterns = [path("logs/", include([path("intake/", include("ingest_mw.contrib.django.urls"))]))]


@override_settings(ROOT_URLCONF=__name__)
def test_mount_path_comes_from_the_resolved_url(post: Post) -> None:
    assert reverse("ingest_mw:ingest", kwargs={"path": ""}) == "/logs/intake/"
    assert post("/logs/intake/", b'{"message": "A"}', BETTERSTACK)[0] == 202
    assert post("/logs/intake/v1/web", b'[{"message": "B"}]', BASELIME)[0] == 202
    status, _, content = post("/logs/intake/v1/-web", b"[]", BASELIME)
    assert (status, orjson.loads(content)["message"]) == (400, "Bad Request")
    status, _, content = post("/logs/intake/web/v2", b"[]", BASELIME)
    assert (status, content.decode()) == (
        404,
        "Not Found: no ingest API at /logs/intake/web/v2; the routes here are"
        " POST /logs/intake/ (Better Stack), POST /logs/intake/v1/<dataset> (Baselime)",
    )
    assert post("/ingest/", b'{"message": "C"}', BETTERSTACK)[0] == 404
    assert sorted(LogEvent.objects.values_list("api", flat=True)) == ["baselime", "betterstack"]


def test_a_path_no_api_serves_is_a_404_naming_the_routes(post: Post) -> None:
    with override_settings(INGEST_MW={**settings.INGEST_MW, "APIS": ["betterstack"]}):
        status, headers, content = post("/ingest/v1/web", b'[{"message": "A"}]', BASELIME)
    assert (status, headers["content-type"]) == (404, "text/plain; charset=utf-8")
    assert content == b"Not Found: no ingest API at /ingest/v1/web; the routes here are POST /ingest/ (Better Stack)"


def test_the_mount_is_served_without_its_slash(post: Post) -> None:
    """``APPEND_SLASH`` cannot redirect a POST: ``/ingest`` is served as ``/ingest/`` is."""
    assert post("/ingest", b'{"message": "no slash"}', BETTERSTACK)[0] == 202
    assert post("/ingest/", b'{"message": "slash"}', BETTERSTACK)[0] == 202
    assert post("/ingest/v1/web", b'[{"message": "B"}]', BASELIME)[0] == 202
    assert post("/ingestion", b'{"message": "elsewhere"}', BETTERSTACK)[0] == 404
    assert reverse("ingest_mw:ingest", kwargs={"path": ""}) == "/ingest"
    assert sorted(LogEvent.objects.values_list("data__message", flat=True)) == ["B", "no slash", "slash"]


def test_csrf_and_login_required_middleware_let_clients_in(db: None) -> None:
    middleware = [*settings.MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]
    client = Client(enforce_csrf_checks=True)
    with override_settings(MIDDLEWARE=middleware):
        response = client.post(
            "/ingest/",
            b'{"message": "A"}',
            content_type="application/json",
            headers={"Authorization": "Bearer example-token"},
        )
        assert response.status_code == 202
        assert "Set-Cookie" not in response.headers  # no session was touched
        assert client.get("/events/").status_code == 302  # the middleware is on
    assert LogEvent.objects.count() == 1


def test_rate_limit_settings_reach_the_view(post: Post) -> None:
    limited = {**settings.INGEST_MW, "BETTERSTACK_RATE_LIMIT": "2/minute", "TRUSTED_PROXIES": ["127.0.0.0/8"]}
    with override_settings(INGEST_MW=limited):
        statuses = [post("/ingest/", b'{"message": "A"}', BETTERSTACK)[0] for _ in range(2)]
        status, headers, content = post("/ingest/", b'{"message": "A"}', BETTERSTACK)
    assert statuses == [202, 202]
    assert (status, content, headers["ratelimit-remaining"]) == (429, b"Too Many Requests", "0")
    assert int(headers["retry-after"]) > 0
    assert LogEvent.objects.count() == 2


def _record_async(batches: list[Batch]):  # type: ignore[no-untyped-def]
    async def store(batch: Batch) -> None:
        batches.append(batch)

    return store


def test_an_async_storage_hook_works_under_both_handlers(post: Post) -> None:
    batches: list[Batch] = []
    hooked = {**settings.INGEST_MW, "MODEL": None, "STORAGE": _record_async(batches)}
    with override_settings(INGEST_MW=hooked):
        assert post("/ingest/v1/web", b'[{"message": "A"}]', {**BASELIME, "x-namespace": "n"})[0] == 202
    assert [(b.dataset, b.namespace, b.events[0].data) for b in batches] == [("web", "n", {"message": "A"})]
    assert not LogEvent.objects.exists()


def _full_disk(batch: Batch) -> None:
    raise OSError("disk full")


def test_a_failing_storage_hook_is_a_500(post: Post) -> None:
    with override_settings(INGEST_MW={**settings.INGEST_MW, "MODEL": None, "STORAGE": _full_disk}):
        assert post("/ingest/", b'{"message": "A"}', BETTERSTACK)[::2] == (500, b"Internal Server Error")


@modify_settings(INSTALLED_APPS={"append": "ingest_mw.contrib.django"})
def test_the_installed_app_stores_in_ingested_event_by_default(post: Post) -> None:
    from ingest_mw.contrib.django.models import IngestedEvent

    call_command("migrate", "ingest_mw", verbosity=0)
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)  # migrations match the models
    without_model = {k: v for k, v in settings.INGEST_MW.items() if k != "MODEL"}
    with override_settings(INGEST_MW=without_model):
        assert post("/ingest/", b'{"message": "A"}', BETTERSTACK)[0] == 202
    event = IngestedEvent.objects.get()
    assert (event.api, event.source, event.data) == ("betterstack", "example", {"message": "A"})
    event.delete()
    assert not LogEvent.objects.exists()


def test_model_sink_inserts_a_batch_at_once(db: None) -> None:
    now = datetime.now(UTC)
    events = [Event(now, {"n": 1}), Event(now, {"n": 2, "raw": b"\xff"}), Event(now, {"n": 3})]
    sink = ModelSink(LogEvent)
    with CaptureQueriesContext(connection) as queries:
        sink(Batch("betterstack", "web", now, events))
    assert sum(q["sql"].startswith("INSERT") for q in queries.captured_queries) == 1
    # MessagePack-only values are stored as the file sinks store them.
    assert [e.data for e in LogEvent.objects.order_by("id")] == [{"n": 1}, {"n": 2, "raw": "\\xff"}, {"n": 3}]
    assert sink.thread_sensitive is True


@pytest.mark.parametrize(
    ("ingest_mw", "message"),
    [
        (
            {"BASELIME_API_KEYS": ["k"], "MODEL": "eventlog.LogEvent"},
            "INGEST_MW['BETTERSTACK_TOKENS'] is not set",
        ),
        ({"BETTERSTACK_TOKEN": ["t"]}, "did you mean INGEST_MW['BETTERSTACK_TOKENS']?"),
        ({"BETTERSTACK_TOKENS": "secret-token"}, "got a single string (wrap it in a list)"),
        (
            {"APIS": ["betterstack"], "BETTERSTACK_TOKENS": ["t"]},
            "or add 'ingest_mw.contrib.django' to INSTALLED_APPS",
        ),
        (
            {"APIS": ["betterstack"], "BETTERSTACK_TOKENS": ["t"], "MODEL": "eventlog.Nope"},
            "INGEST_MW['MODEL'] = 'eventlog.Nope': App 'eventlog' doesn't have a 'Nope' model",
        ),
        (
            {"APIS": ["betterstack"], "BETTERSTACK_TOKENS": ["t"], "MODEL": "auth.User"},
            "has no field received_at, dt",
        ),
        (
            {
                "APIS": ["betterstack"],
                "BETTERSTACK_TOKENS": ["t"],
                "MODEL": "eventlog.LogEvent",
                "STORAGE": print,
            },
            "set INGEST_MW['STORAGE'] or INGEST_MW['MODEL'], not both",
        ),
        (
            {"APIS": ["betterstack"], "BETTERSTACK_TOKENS": ["t"], "STORAGE": "eventlog.nope"},
            "cannot be loaded",
        ),
        (
            {
                "APIS": ["baselime"],
                "BASELIME_API_KEYS": ["k"],
                "MODEL": "eventlog.LogEvent",
                "BASELIME_MAX_PAST": "1h",
            },
            "BASELIME_MAX_PAST",
        ),
        ("not a dict", "settings.INGEST_MW must be a dict"),
    ],
)
def test_wrong_settings_stop_start_up_saying_what_to_fix(ingest_mw: object, message: str) -> None:
    app = AppConfig.create("ingest_mw.contrib.django")
    with override_settings(INGEST_MW=ingest_mw), pytest.raises(ImproperlyConfigured) as raised:
        app.ready()
    assert message in str(raised.value)
    assert "secret-token" not in str(raised.value)
    conf.endpoint()  # the project's own settings are back


def test_a_body_cut_short_by_the_client_stores_nothing(db: None) -> None:
    """Django's stream returns b"" at an early end: the view still sees the
    body is shorter than its Content-Length and stores none of it."""
    import io

    from exampleproject.wsgi import application

    body = b'{"message": "A"}\n{"message": "B"}\n'  # whole lines: would parse as NDJSON
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/ingest/",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "CONTENT_LENGTH": str(len(body) + 100),
        "CONTENT_TYPE": "application/x-ndjson",
        "HTTP_AUTHORIZATION": BETTERSTACK["Authorization"],
    }
    statuses = []
    application(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses[0].startswith("400")
    assert not LogEvent.objects.exists()


def test_the_observer_setting_reaches_the_flow(post: Post) -> None:
    registry = CollectorRegistry()
    observed = {**settings.INGEST_MW, "OBSERVER": PrometheusObserver(registry=registry)}
    with override_settings(INGEST_MW=observed):
        assert post("/ingest/", b'[{"message": "A"}, {"message": "B"}]', BETTERSTACK)[0] == 202
        assert post("/ingest/v1/web", b'[{"message": "C"}]', {**BASELIME, "x-api-key": "no"})[0] == 401
    accepted = registry.get_sample_value("ingest_mw_events_accepted_total", {"api": "betterstack"})
    refused = registry.get_sample_value("ingest_mw_requests_total", {"api": "baselime", "status": "401"})
    assert (accepted, refused) == (2, 1)
    # The in-flight gauges read the admission of the APIs the settings built (told by the glue).
    assert registry.get_sample_value("ingest_mw_requests_in_flight") == 0
    with override_settings(INGEST_MW=observed):
        admission = conf.endpoint().routes.apis[0].admission
    assert any(watched is admission for watched in observed["OBSERVER"].tallies.admissions)  # type: ignore[attr-defined]
    with pytest.raises(ImproperlyConfigured, match=r"INGEST_MW\['OBSERVER'\] = 'x.y:z' cannot be loaded"):
        with override_settings(INGEST_MW={**settings.INGEST_MW, "OBSERVER": "x.y:z"}):
            conf.endpoint()


def test_otlp_named_in_apis_is_served_at_otlp_v1_logs_into_the_model(post: Post) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
    )

    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    service = resource_logs.resource.attributes.add()
    service.key, service.value.string_value = "service.name", "django-site"
    resource_logs.scope_logs.add().log_records.add().body.string_value = "from OTLP"
    otlp = {"Authorization": "Bearer example-token", "Content-Type": "application/x-protobuf"}
    with override_settings(INGEST_MW={**settings.INGEST_MW, "APIS": ["betterstack", "otlp", "baselime"]}):
        status, headers, content = post("/ingest/otlp/v1/logs", request.SerializeToString(), otlp)
        assert (status, headers["content-type"]) == (200, "application/x-protobuf")
        assert not ExportLogsServiceResponse.FromString(content).HasField("partial_success")
    (event,) = LogEvent.objects.filter(api="otlp")
    assert (event.source, event.service) == ("example", "django-site")
