"""Access-log lines and the JSON formatter: every line parses, carries the request's
facts, and never a credential or a query string."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest
from clients import PREFIX, make_client

from ingest_mw import BaselimeAPI, BetterStackAPI, MemorySink
from ingest_mw.logs import ACCESS_LOGGER, AccessLogObserver, JSONFormatter, scrub

TOKEN = "tok-7f3a9c-secret"
KEY = "key-51be02-secret"
QUERY_SECRET = "q-secret-0d9e"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Everything ``ingest_mw`` logs at INFO and up, as the JSON formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("ingest_mw")
    # setLevel, not an assignment: logging caches isEnabledFor per logger, and
    # only setLevel clears that cache (an earlier test's WARNING would stick).
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_line_per_request_with_its_facts_and_no_secret(adapter: str, json_lines: io.StringIO) -> None:
    apis = [BetterStackAPI({"web": TOKEN}), BaselimeAPI({"team": KEY})]
    client = make_client(adapter, apis, MemorySink(), AccessLogObserver())
    bearer = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    query = f"?token={QUERY_SECRET}&api_key={QUERY_SECRET}"
    assert client.request("POST", f"{PREFIX}/{query}", b'[{"m": 1}, {"m": 2}]', bearer).status == 202
    wrong = {**bearer, "Authorization": f"Bearer {TOKEN}x"}
    assert client.request("POST", f"{PREFIX}/{query}", b'{"m": 1}', wrong).status == 403
    baselime = {"x-api-key": KEY, "Content-Type": "application/json"}
    assert client.request("POST", f"{PREFIX}/v1/web{query}", b'[{"m": 1}, 5]', baselime).status == 400

    text = json_lines.getvalue()
    for secret in (TOKEN, KEY, QUERY_SECRET, "?"):
        assert secret not in text
    accepted, refused, partial = lines(json_lines)
    assert {key: accepted[key] for key in ("level", "logger", "api", "source", "status", "events", "path")} == {
        "level": "INFO",
        "logger": ACCESS_LOGGER,
        "api": "betterstack",
        "source": "web",
        "status": 202,
        "events": 2,
        "path": "/",
    }
    assert accepted["bytes"] == accepted["decoded_bytes"] == len(b'[{"m": 1}, {"m": 2}]')
    assert accepted["duration_ms"] > 0 and accepted["storage_ms"] >= 0
    assert datetime.fromisoformat(accepted["time"]).tzinfo is not None and accepted["time"].endswith("Z")
    assert accepted["message"].startswith('127.0.0.1 "POST /" 202 betterstack source=web events=2')
    assert (refused["status"], refused["source"], refused["events"], refused["bytes"]) == (403, None, 0, 0)
    assert (partial["api"], partial["path"], partial["status"]) == ("baselime", "/v1/web", 400)
    assert (partial["events"], partial["events_refused"], partial["refused"]) == (1, 1, {"not_an_object": 1})


def test_no_access_line_while_its_logger_is_off(adapter: str, json_lines: io.StringIO) -> None:
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)
    try:
        client = make_client(adapter, BetterStackAPI([TOKEN]), MemorySink(), AccessLogObserver())
        assert (
            client.request(
                "POST", f"{PREFIX}/", b"{}", {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            ).status
            == 202
        )
    finally:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.NOTSET)
    assert json_lines.getvalue() == ""


def record(message: str, *args: Any, exc_info: Any = None, name: str = "uvicorn.access") -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, message, args, exc_info)


@pytest.mark.parametrize(
    ("message", "args", "expected"),
    [
        # uvicorn's own access line, should a host leave it on.
        (
            '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:50000", "POST", f"/ingest/?token={QUERY_SECRET}", "1.1", 202),
            '127.0.0.1:50000 - "POST /ingest/ HTTP/1.1" 202',
        ),
        ("sent Authorization: Bearer %s", (TOKEN,), "sent Authorization: Bearer [redacted]"),
        ("x-api-key=%s api_key: %s", (KEY, KEY), "x-api-key=[redacted] api_key: [redacted]"),
        ("storage redis://:%s@cache:6379/0 down", (TOKEN,), "storage redis://:[redacted]@cache:6379/0 down"),
        ("storage redis://:%s/x@cache:6379/0 down", (TOKEN,), "storage redis://:[redacted]@cache:6379/0 down"),
        ("did you mean INGEST_MW['STORAGE']?", (), "did you mean INGEST_MW['STORAGE']?"),
    ],
)
def test_the_formatter_scrubs_any_message(message: str, args: tuple[Any, ...], expected: str) -> None:
    line = JSONFormatter().format(record(message, *args))
    assert "\n" not in line
    entry = orjson.loads(line)
    assert entry["message"] == expected == scrub(message % args)
    assert (entry["level"], entry["logger"]) == ("INFO", "uvicorn.access")


def test_a_traceback_is_one_field_of_the_same_line() -> None:
    try:
        raise RuntimeError(f"failed on https://host/x?token={QUERY_SECRET}")
    except RuntimeError:
        import sys

        line = JSONFormatter().format(record("hook failed", exc_info=sys.exc_info(), name="ingest_mw"))
    assert line.count("\n") == 0
    entry = orjson.loads(line)
    assert "Traceback" in entry["exception"] and "RuntimeError: failed on https://host/x" in entry["exception"]
    assert QUERY_SECRET not in line


def test_serves_log_config_formats_and_rate_limits_other_libraries_lines_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # psycopg's pool logs a connection failure per attempt, over several lines:
    # under serve's --log-format json it is one JSON object a line, and a burst
    # of them is rate-limited as ours are.
    import logging.config

    from ingest_mw.serve.logs import log_config

    config = log_config(level="info", log_format="json", access_log=False)
    # dictConfig changes these loggers for the whole process: put them back after.
    touched = [logging.getLogger(name) for name in config["loggers"]] + [logging.getLogger()]
    saved = [(logger, logger.handlers[:], logger.level, logger.propagate, logger.filters[:]) for logger in touched]
    try:
        logging.config.dictConfig(config)
        pool = logging.getLogger("psycopg.pool")
        for _ in range(20):
            pool.warning(
                "error connecting in %r: %s", "ingest_mw events", "connection refused\n\tIs the server running?"
            )
        logging.getLogger("psycopg.pool").info("not a warning: below the root's level")
        lines = capsys.readouterr().err.splitlines()
    finally:
        for logger, handlers, level, propagate, filters in saved:
            logger.handlers[:], logger.filters[:] = handlers, filters
            logger.setLevel(level)
            logger.propagate = propagate
    records = [orjson.loads(line) for line in lines]
    assert 1 <= len(records) <= 5
    assert {(r["logger"], r["level"]) for r in records} == {("psycopg.pool", "WARNING")}
    assert records[0]["message"].startswith("error connecting in 'ingest_mw events': connection refused")
