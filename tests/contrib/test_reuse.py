"""The components alone, as a host would reuse them outside the ingest APIs
(the snippets of docs/reuse.md), in front of a Flask view."""

import gzip
from datetime import UTC, datetime, timedelta

import pytest
import webtest
from flask import Flask, request

from ingest_mw import BodyLimit, CodecNegotiation, CredentialAuth, EventTimes, IngestError, parse_dt
from ingest_mw.codecs import Decoded, InvalidEvent, JSONCodec, NDJSONCodec
from ingest_mw.eventcaps import EventCaps
from ingest_mw.ratelimit_middleware import RateLimitWSGIMiddleware

UTC = UTC


def upload_app(limit: BodyLimit) -> Flask:
    """A host's own view with the body limit in front of it."""
    app = Flask("uploads")

    @app.post("/upload")
    def upload() -> tuple[str, int, list[tuple[str, str]]] | str:
        try:
            limit.check_length(request.headers.get("Content-Length"))
            reader = limit.reader(request.headers.get("Content-Encoding"))
            while chunk := request.stream.read(64 * 1024):
                reader.feed(chunk)
            body = reader.finish()
        except IngestError as error:
            return error.detail, error.status, list(error.headers)
        return f"{len(body)} bytes"

    return app


def test_body_limit_in_front_of_a_host_view() -> None:
    client = webtest.TestApp(upload_app(BodyLimit(1000, detail="uploads are 1000 bytes at most")))
    assert client.post("/upload", b"x" * 1000).text == "1000 bytes"
    gzipped = gzip.compress(b"x" * 1000)
    assert client.post("/upload", gzipped, headers={"Content-Encoding": "gzip"}).text == "1000 bytes"
    # Small on the wire, too large once decompressed: stopped at the limit.
    bomb = gzip.compress(b"x" * 1_000_000)
    response = client.post("/upload", bomb, headers={"Content-Encoding": "gzip"}, status=413)
    assert response.text == "uploads are 1000 bytes at most"
    client.post("/upload", b"x" * 1001, status=413)
    client.post("/upload", b"x", headers={"Content-Encoding": "lzma"}, status=415)


def test_rate_limit_in_front_of_a_host_app() -> None:
    app = upload_app(BodyLimit(1000))
    app.wsgi_app = RateLimitWSGIMiddleware(app.wsgi_app, "2/minute")  # type: ignore[method-assign]
    client = webtest.TestApp(app, extra_environ={"REMOTE_ADDR": "192.0.2.1"})
    assert client.post("/upload", b"x").headers["RateLimit-Remaining"] == "1"
    client.post("/upload", b"x")
    refused = client.post("/upload", b"x", status=429)
    assert int(refused.headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1714564800, datetime(2024, 5, 1, 12, tzinfo=UTC)),  # seconds
        (1714564800123, datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)),  # milliseconds
        (1714564800123456789, datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)),  # nanoseconds
        ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01 12:00:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),  # no offset: UTC
        ("yesterday", None),
        (True, None),
    ],
)
def test_parse_dt_as_a_plain_function(value: object, expected: datetime | None) -> None:
    assert parse_dt(value) == expected


def test_event_times_alone() -> None:
    times = EventTimes(fields=("ts",), max_past=timedelta(hours=1))
    received = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert times.event_time({"ts": "2024-05-01T11:30:00Z"}, received) == datetime(2024, 5, 1, 11, 30, tzinfo=UTC)
    assert times.event_time({"ts": "2024-05-01T10:00:00Z"}, received) == received  # too old
    assert times.event_time({}, received) == received


def test_codec_negotiation_as_a_plain_function() -> None:
    codecs = CodecNegotiation([JSONCodec(), NDJSONCodec()])
    codec = codecs.negotiate("application/x-ndjson; charset=utf-8")
    assert codec.decode(b'{"a": 1}\n\n{"b": 2}\n').events == [{"a": 1}, {"b": 2}]
    assert codecs.negotiate("application/json").decode(b'[{"a": 1}]').events == [{"a": 1}]
    with pytest.raises(IngestError) as refused:
        codecs.negotiate("text/csv")
    assert refused.value.status == 415
    assert "application/json, application/x-ndjson" in refused.value.detail


def test_credential_auth_alone() -> None:
    auth = CredentialAuth({"ci": "s3cret"}, header="x-deploy-token", scheme=None, status=401)
    assert auth.authenticate({"x-deploy-token": "s3cret"}) == "ci"
    with pytest.raises(IngestError) as refused:
        auth.authenticate({"x-deploy-token": "guess"})
    assert (refused.value.status, refused.value.detail) == (401, "Unauthorized")


class CSVCodec:
    """docs/reuse.md's codec of a host's own."""

    media_types = ("text/csv",)

    def decode(self, body: bytes) -> Decoded:
        events, invalid = [], []
        for index, line in enumerate(body.decode().splitlines()):
            level, _, message = line.partition(",")
            if message:
                events.append({"level": level, "message": message})
            else:
                invalid.append(InvalidEvent(index, "no message after the level", "invalid"))
        return Decoded(events, invalid, plain=True)


def test_a_codec_of_ones_own_beside_the_built_in_ones() -> None:
    codecs = CodecNegotiation([JSONCodec(), CSVCodec()])
    decoded = codecs.negotiate("text/csv; charset=utf-8").decode(b"info,started\nwarn\nerror,disk full")
    assert decoded.events == [{"level": "info", "message": "started"}, {"level": "error", "message": "disk full"}]
    assert decoded.invalid == [(1, "no message after the level")]  # the pair a client is told about
    assert [element.kind for element in decoded.invalid] == ["invalid"]
    assert decoded.plain
    EventCaps(max_depth=1).check(decoded.events, 100, plain=decoded.plain)  # flat events: within one level
