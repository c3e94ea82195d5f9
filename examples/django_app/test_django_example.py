"""The example project end to end: both APIs under /ingest/, through Django's
WSGI and ASGI handlers, into the project's own model."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
from django.contrib.auth.models import User
from django.test import Client
from eventlog.models import LogEvent

Post = Callable[[str, bytes, dict[str, str]], tuple[int, dict[str, str], bytes]]  # the post fixture
BETTERSTACK = {"Authorization": "Bearer example-token", "Content-Type": "application/json"}
BASELIME = {"x-api-key": "example-key", "Content-Type": "application/json", "x-service": "checkout"}


def test_better_stack_events_are_stored_in_the_project_model(post: Post) -> None:
    sent_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    body = orjson.dumps([{"message": "A", "dt": sent_at.isoformat()}, {"message": "B"}])
    status, headers, content = post("/ingest/", body, BETTERSTACK)
    assert (status, content) == (202, b"")
    assert "content-type" not in headers
    events = list(LogEvent.objects.order_by("id"))
    assert [e.data["message"] for e in events] == ["A", "B"]
    assert {(e.api, e.source, e.dataset) for e in events} == {("betterstack", "example", None)}
    assert events[0].dt == sent_at
    assert events[1].dt == events[1].received_at  # no dt: the time it arrived


def test_baselime_events_are_stored_with_their_dataset(post: Post) -> None:
    status, headers, content = post("/ingest/v1/checkout-logs", b'[{"message": "paid"}]', BASELIME)
    assert (status, orjson.loads(content)) == (202, {"message": "Request Accepted"})
    assert headers["content-type"] == "application/json"
    event = LogEvent.objects.get()
    assert (event.api, event.dataset, event.service, event.data) == (
        "baselime",
        "checkout-logs",
        "checkout",
        {"message": "paid"},
    )


def test_wrong_credentials_are_refused(post: Post) -> None:
    wrong_token = {**BETTERSTACK, "Authorization": "Bearer nope"}
    assert post("/ingest/", b'{"message": "A"}', wrong_token)[::2] == (403, b"Unauthorized")
    status, _, content = post("/ingest/v1/logs", b'[{"message": "A"}]', {**BASELIME, "x-api-key": "nope"})
    assert (status, orjson.loads(content)["message"]) == (401, "Unauthorised")
    assert not LogEvent.objects.exists()


def test_bad_bodies_are_refused(post: Post) -> None:
    assert post("/ingest/", b'{"message": ', BETTERSTACK)[::2] == (406, b"Couldn't parse JSON content.")
    status, _, content = post("/ingest/v1/logs", b'{"message": "not in an array"}', BASELIME)
    assert (status, orjson.loads(content)["message"]) == (400, "Bad Request")
    assert not LogEvent.objects.exists()


def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.get_or_create(username="admin", is_staff=True, is_superuser=True)[0])
    return client


def test_events_lists_each_stored_row_whole(post: Post) -> None:
    sent_at = "2024-05-01T12:00:00.123456+00:00"
    body = orjson.dumps([{"message": "paid", "timestamp": sent_at, "namespace": "/orders/{id}"}])
    post("/ingest/v1/checkout-logs", body, {**BASELIME, "x-namespace": "from-header"})
    (row,) = Client().get("/events/").json()["events"]
    stored = LogEvent.objects.get()
    assert row == {
        "id": stored.id,
        "received_at": stored.received_at.isoformat(),
        "dt": sent_at,  # to the microsecond
        "api": "baselime",
        "source": "example",
        "dataset": "checkout-logs",
        "service": "checkout",
        "namespace": "/orders/{id}",  # the event's own wins over the header's
        "data": {"message": "paid", "timestamp": sent_at, "namespace": "/orders/{id}"},
    }


def test_the_admin_shows_the_message_and_searches_the_data(post: Post) -> None:
    post("/ingest/", b'{"message": "hello from curl", "user": {"name": "needle-in-data"}}', BETTERSTACK)
    post("/ingest/", b'{"level": "info", "msg": "no message field"}', BETTERSTACK)
    post("/ingest/", b'{"severity_text": "WARN", "body": "an OTLP-like body"}', BETTERSTACK)
    post("/ingest/", b'{"level": "debug", "user": "no message at all"}', BETTERSTACK)
    client = admin_client()
    page = client.get("/admin/eventlog/logevent/").content.decode()
    assert "hello from curl" in page
    # The message as tail reads it (message, msg, body), else the first text field.
    assert '<td class="field-message">no message field</td>' in page
    assert '<td class="field-message">an OTLP-like body</td>' in page
    assert '<td class="field-message">debug</td>' in page
    found = client.get("/admin/eventlog/logevent/", {"q": "needle-in-data"}).content.decode()
    assert "hello from curl" in found and 'field-message">no message field<' not in found
    assert "1 result" in found


def test_the_admin_detail_page_shows_the_whole_event(post: Post) -> None:
    post("/ingest/", b'{"message": "hello", "nested": {"values": 123}}', BETTERSTACK)
    event = LogEvent.objects.get()
    page = admin_client().get(f"/admin/eventlog/logevent/{event.pk}/change/").content.decode()
    pretty = (
        "{\n  &quot;message&quot;: &quot;hello&quot;,\n  &quot;nested&quot;: {\n    &quot;values&quot;: 123\n  }\n}"
    )
    assert f"<pre>{pretty}</pre>" in page


def test_a_content_type_sent_twice_is_that_content_type(post: Post) -> None:
    """What a fetch() client sends when given Content-Type and content-type: one joined header."""
    twice = {**BETTERSTACK, "Content-Type": "application/json, application/json"}
    assert post("/ingest/", b'{"message": "fetch"}', twice)[0] == 202
    status, _, content = post(
        "/ingest/", b'{"message": "x"}', {**BETTERSTACK, "Content-Type": "application/json, text/csv"}
    )
    assert (status, content) == (415, b"Content-Type names several media types (application/json, text/csv): send one")
    assert [e.data for e in LogEvent.objects.all()] == [{"message": "fetch"}]
