"""Log lines: one access-log line per ingest request, and a JSON formatter.

:class:`AccessLogObserver` is an :class:`~ingest_mw.observe.Observer` that
writes one line per request through :mod:`logging`, to the logger
``ingest_mw.access`` at ``INFO``; the record carries the request's
:class:`~ingest_mw.observe.Observation` as ``record.observation``.
:class:`JSONFormatter` formats any record as one JSON object per line
(``time``, ``level``, ``logger``, ``message``, and for an access line the
request's ``api``, ``source``, ``status``, ``events``, ``bytes``,
``duration_ms``...). Wiring, for a host or for ``serve``::

    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter())        # --log-format json
    logging.getLogger("ingest_mw").addHandler(handler)
    logging.getLogger("ingest_mw").setLevel(logging.INFO)
    app = ASGIApp(apis, sink=sink, observer=AccessLogObserver())   # --access-log

No credential and no query string ever reaches these lines: an
observation holds the source *name* and the path without its query, and
the formatter also scrubs query strings, ``Bearer`` tokens, ``key=`` /
``token=`` / ``password=`` values and URL passwords from any message it
formats (another library's, uvicorn's access lines included), as a safety net.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from .observe import Observation, Observer
from .redact import masked

__all__ = ["ACCESS_LOGGER", "AccessLogObserver", "JSONFormatter", "access_fields", "scrub"]

ACCESS_LOGGER = "ingest_mw.access"

# What the safety net removes from a message. A query string: from "?" up
# to the next blank or quote, when the "?" follows a path or URL character.
_QUERY = re.compile(r"(?<=[\w/.~%-])\?[^\s\"']*")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")
_SECRET_PARAM = re.compile(
    r"(?i)\b([\w-]*(?:token|key|password|passwd|secret|auth)[\w-]*)([=:]\s*)(?!bearer\s|\[redacted\])[^\s\"',;&]+"
)
#: A URL in a message: its password is masked by the one rule for storage URLs.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+._-]*://[^\s\"'<>]+")


def scrub(text: str) -> str:
    """``text`` without query strings, bearer tokens, secret-looking ``name=value``
    pairs or passwords in URLs."""
    if "?" in text:
        text = _QUERY.sub("", text)
    text = _BEARER.sub(r"\1 [redacted]", text)
    text = _SECRET_PARAM.sub(r"\1\2[redacted]", text)
    if "://" in text:
        text = _URL.sub(lambda url: masked(url.group(0), "[redacted]"), text)
    return text


def access_fields(seen: Observation) -> dict[str, Any]:
    """The fields of an access line, from the observation (what :class:`JSONFormatter` adds)."""
    fields: dict[str, Any] = {
        "api": seen.api,
        "method": seen.method,
        "path": seen.path,
        "client": seen.client,
        "source": seen.source,
        "status": seen.status,
        "events": seen.events_accepted,
        "events_refused": seen.events_refused,
        "bytes": seen.wire_bytes,
        "decoded_bytes": seen.body_bytes,
        "duration_ms": round(seen.duration_seconds * 1000, 3),
    }
    if seen.refused:
        fields["refused"] = dict(seen.refused)
    if seen.storage_seconds is not None:
        fields["storage_ms"] = round(seen.storage_seconds * 1000, 3)
    if seen.rate_limited:
        fields["rate_limited"] = True
    return fields


class AccessLogObserver(Observer):
    """One ``INFO`` line per ingest request on ``logger`` (``ingest_mw.access``).

    The message reads like a server's access line (``client "METHOD path"
    status api source events bytes duration``); the record's
    ``observation`` attribute holds the facts for a structured formatter.
    Nothing is formatted while the logger is off for ``INFO``.
    """

    def __init__(self, *, logger: logging.Logger | str = ACCESS_LOGGER, level: int = logging.INFO) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    def finished(self, seen: Observation, token: object) -> None:
        logger = self.logger
        if not logger.isEnabledFor(self.level):
            return
        logger.log(
            self.level,
            '%s "%s %s" %d %s source=%s events=%d refused=%d bytes=%d %.1fms',
            seen.client or "-",
            seen.method,
            seen.path,
            seen.status,
            seen.api,
            seen.source or "-",
            seen.events_accepted,
            seen.events_refused,
            seen.wire_bytes,
            seen.duration_seconds * 1000,
            extra={"observation": seen},
        )


class JSONFormatter(logging.Formatter):
    """Each record as one JSON object on one line: ``time`` (UTC, ISO 8601 with
    milliseconds), ``level``, ``logger``, ``message``; an access line's fields
    (:func:`access_fields`); ``exception`` with the traceback, if any. The
    message and traceback are :func:`scrub`-bed."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {
            "time": time.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        seen = getattr(record, "observation", None)
        if isinstance(seen, Observation):
            entry.update(access_fields(seen))
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = scrub(record.exc_text)
        return orjson.dumps(entry, default=str).decode()
