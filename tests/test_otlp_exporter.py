"""The official OpenTelemetry Python exporter against a real ``ingest-mw serve``.

Python ``logging`` -> the SDK's ``LoggingHandler`` -> a ``LoggerProvider``
with a ``BatchLogRecordProcessor`` -> ``OTLPLogExporter`` (protobuf over
HTTP, gzip), configured only through the ``OTEL_EXPORTER_OTLP_LOGS_*``
environment variables, to a server on loopback; every record is then read
back from the SQLite file.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import warnings
from datetime import UTC, datetime

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from serve_process import Server

TOKEN = "otel-source-token"
RECORDS = 300
#: The function the records are logged from (the handler records it in code.function.name).
LOGGED_FROM = "test_every_record_of_the_official_exporter_is_stored_as_mapped"


def stored(db_path) -> list[dict]:
    db = sqlite3.connect(db_path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM events WHERE api = 'otlp' ORDER BY id")]
    finally:
        db.close()


@pytest.fixture
def served(tmp_path):
    db = tmp_path / "ingest.db"
    server = Server(["--sink", f"sqlite:///{db}", "--token", f"web={TOKEN}"])  # serve's defaults otherwise
    yield server, db
    server.stop()


def test_every_record_of_the_official_exporter_is_stored_as_mapped(served, monkeypatch):
    server, db = served
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", server.url + "/otlp/v1/logs")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_HEADERS", f"Authorization=Bearer%20{TOKEN}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "10")

    attributes = {"service.name": "checkout", "service.namespace": "shop", "deployment.environment": "ci"}
    resource = Resource.create(attributes)
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(), schedule_delay_millis=200))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the handler is moving to another package
        handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    logger = logging.getLogger("shop.checkout")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    tracer = TracerProvider(resource=resource).get_tracer("tests")
    traced: dict[int, tuple[str, str, int]] = {}
    before = datetime.now(UTC)
    try:
        for i in range(RECORDS - 1):
            if i % 3 == 0:
                with tracer.start_as_current_span(f"order {i}") as span:
                    logger.warning("order %d placed", i, extra={"order": i, "user": f"u{i % 7}", "paid": i % 2 == 0})
                    context = span.get_span_context()
                    traced[i] = (f"{context.trace_id:032x}", f"{context.span_id:016x}", int(context.trace_flags))
            else:
                logger.info("order %d placed", i, extra={"order": i, "user": f"u{i % 7}", "paid": i % 2 == 0})
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            logger.exception("could not total the basket")
        assert provider.force_flush(timeout_millis=30_000)
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
    after = datetime.now(UTC)

    rows = stored(db)
    assert len(rows) == RECORDS
    metadata = {(r["source"], r["service"], r["namespace"], r["dataset"]) for r in rows}
    assert metadata == {("web", "checkout", "shop", None)}
    by_order = {}
    for row in rows:
        data = json.loads(row["data"])
        assert data["resource"]["service.name"] == "checkout"
        assert data["resource"]["deployment.environment"] == "ci"
        assert data["scope"] == {"name": "shop.checkout"}
        # The stored time is the record's own (logging's created), in UTC.
        dt = datetime.fromisoformat(row["dt"])
        assert before.replace(microsecond=0) <= dt <= after
        assert dt == datetime.fromtimestamp(data["time_unix_nano"] // 1000 / 1e6, UTC)
        assert data["observed_time_unix_nano"] >= data["time_unix_nano"]
        if "order" in data.get("attributes", {}):
            by_order[data["attributes"]["order"]] = data
        else:
            failure = data
    assert sorted(by_order) == list(range(RECORDS - 1))
    for i, data in by_order.items():
        assert data["body"] == f"order {i} placed"
        assert data["attributes"]["user"] == f"u{i % 7}"
        assert data["attributes"]["paid"] is (i % 2 == 0)
        assert data["attributes"]["code.function.name"] == LOGGED_FROM
        if i % 3 == 0:
            assert (data["severity_text"], data["severity_number"]) == ("WARN", 13)
            assert (data["trace_id"], data["span_id"], data["flags"]) == traced[i]
            assert data["flags"] & 1  # sampled
        else:
            assert (data["severity_text"], data["severity_number"]) == ("INFO", 9)
            assert "trace_id" not in data and "span_id" not in data
    assert failure["body"] == "could not total the basket"
    assert (failure["severity_text"], failure["severity_number"]) == ("ERROR", 17)
    assert failure["attributes"]["exception.type"] == "ZeroDivisionError"
    assert failure["attributes"]["exception.message"] == "division by zero"
    assert "1 / 0" in failure["attributes"]["exception.stacktrace"]
