"""Logging of ``ingest-mw serve``: text or one JSON object a line
(:class:`ingest_mw.logs.JSONFormatter`), warnings rate-limited.

uvicorn's own access log is always off: it writes the query string, where a
client may have put its token. ``--access-log`` writes ingest_mw's own line
instead (:class:`ingest_mw.logs.AccessLogObserver`, logger
``ingest_mw.access``), which never holds a query string or a credential.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["RateLimitedFilter", "log_config"]


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
        {"()": "ingest_mw.logs.JSONFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
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
        # Every other library's warnings (psycopg's pool, redis-py, asyncio) in
        # the same format and rate-limited like ours, not as raw lines.
        "root": {"handlers": ["default"], "level": "WARNING"},
    }
