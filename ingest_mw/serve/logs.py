"""Logging of ``ingest-mw serve``: text or one JSON object a line, refusals rate-limited.

uvicorn's own access log is always off: it writes the query string, where a
client may have put its token. ``--access-log`` writes ingest_mw's own line
instead (logger ``ingest_mw.access``), which never holds a query string or a
credential.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JSONFormatter", "RateLimitedFilter", "log_config"]

#: The attributes every LogRecord has; anything else on a record came as ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, then every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class RateLimitedFilter(logging.Filter):
    """At most ``burst`` lines of one kind (one message template) per
    ``window`` seconds, warnings and above only; the next line let through
    says how many were dropped. An attack that makes a refusal per connection
    cannot fill the disk."""

    def __init__(self, *, burst: int = 5, window: float = 10.0) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        # template -> [window start, lines let through in it, lines dropped]
        self._kinds: dict[str, list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        now = time.monotonic()
        key = str(record.msg)
        state = self._kinds.get(key)
        if state is None or now - state[0] >= self.window:
            if len(self._kinds) > 1000:  # the templates are few; never grows with clients
                self._kinds.clear()
            dropped = int(state[2]) if state else 0
            self._kinds[key] = [now, 1, 0]
            if dropped:
                record.msg = f"{record.msg} ({dropped} similar lines dropped in the last {self.window:g}s)"
            return True
        if state[1] < self.burst:
            state[1] += 1
            return True
        state[2] += 1
        return False


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_config(*, level: str, log_format: str, access_log: bool) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn's loggers and ours, on stderr."""
    formatter: dict[str, Any] = (
        {"()": "ingest_mw.serve.logs.JSONFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "default"}
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"rate_limited": {"()": "ingest_mw.serve.logs.RateLimitedFilter"}},
        "handlers": {"default": {**handler, "filters": ["rate_limited"]}},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # Off: it logs the query string (see the module docstring).
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "ingest_mw": {"handlers": ["default"], "level": level, "propagate": False},
            # Its own switch, whatever --log-level says.
            "ingest_mw.access": {"level": "INFO" if access_log else "CRITICAL"},
        },
    }
