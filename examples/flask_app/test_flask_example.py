"""The Flask example end to end through WSGI (webtest): both APIs under
/ingest/, into the app's own SQLite table, and what it refuses."""

from pathlib import Path

import orjson
import pytest
import webtest
from flask_example import create_app

BETTERSTACK = {"Authorization": "Bearer example-token", "Content-Type": "application/json"}
BASELIME = {"x-api-key": "example-key", "Content-Type": "application/json"}


@pytest.fixture
def app(tmp_path: Path) -> webtest.TestApp:
    return webtest.TestApp(create_app({"EVENTS_DATABASE": str(tmp_path / "events.db")}))


def events(app: webtest.TestApp) -> list[dict]:
    return app.get("/events").json["events"]  # type: ignore[no-any-return]


def test_both_apis_store_through_the_app_hook(app: webtest.TestApp) -> None:
    response = app.post("/ingest/", b'[{"message": "A"}, {"message": "B"}]', headers=BETTERSTACK)
    assert (response.status_int, response.body) == (202, b"")
    response = app.post("/ingest/v1/web", b'[{"message": "C"}]', headers=BASELIME)
    assert (response.status_int, response.json) == (202, {"message": "Request Accepted"})
    assert [(e["api"], e["source"], e["dataset"], e["data"]["message"]) for e in events(app)] == [
        ("baselime", "example", "web", "C"),
        ("betterstack", "example", None, "B"),
        ("betterstack", "example", None, "A"),
    ]


def test_wrong_credentials_are_refused(app: webtest.TestApp) -> None:
    response = app.post("/ingest/", b"{}", headers={**BETTERSTACK, "Authorization": "Bearer x"}, status=403)
    assert response.body == b"Unauthorized"
    response = app.post("/ingest/v1/web", b"[{}]", headers={**BASELIME, "x-api-key": "x"}, status=401)
    assert response.json["message"] == "Unauthorised"
    assert events(app) == []


def test_bad_bodies_are_refused(app: webtest.TestApp) -> None:
    app.post("/ingest/", b"[{", headers=BETTERSTACK, status=406)
    response = app.post("/ingest/v1/web", b'"a string"', headers=BASELIME, status=400)
    assert orjson.loads(response.body)["message"] == "Bad Request"
    assert events(app) == []


def test_events_lists_each_stored_row_whole(app: webtest.TestApp) -> None:
    body = b'[{"message": "C", "timestamp": "2024-05-01T12:00:00.123456Z", "service": "own"}, {"message": "D"}]'
    app.post("/ingest/v1/web", body, headers={**BASELIME, "x-service": "hdr", "x-namespace": "ns"})
    newest, older = events(app)
    assert set(newest) == {"id", "received_at", "dt", "api", "source", "dataset", "service", "namespace", "data"}
    assert (older["dt"], older["service"], older["namespace"]) == ("2024-05-01T12:00:00.123456+00:00", "own", "ns")
    assert (newest["service"], newest["namespace"], newest["data"]) == ("hdr", "ns", {"message": "D"})
    assert newest["received_at"] == older["received_at"]
