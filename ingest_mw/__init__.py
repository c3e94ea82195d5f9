"""Embeddable log-ingestion endpoints: Better Stack's and Baselime's HTTP APIs
and OTLP/HTTP logs as WSGI and ASGI apps, middleware and reusable components."""

from __future__ import annotations

from .api import IngestAPI, Request, Response
from .asgi import ASGIApp, ASGIMiddleware
from .auth import CredentialAuth
from .baselime import BaselimeAPI
from .batch import Batch, Event, Events, TimesRule
from .betterstack import BetterStackAPI
from .body import BodyLimit
from .clientip import TrustedProxies
from .codecs import CodecNegotiation
from .errors import IngestError
from .otlp import OTLPLogsAPI
from .ratelimit import RateLimit
from .ratelimit_middleware import RateLimitASGIMiddleware, RateLimitWSGIMiddleware
from .sinks import JSONLinesSink, JSONMemorySink, MemorySink, SQLiteSink, sink_from_url
from .timestamps import EventTimes, parse_dt
from .wsgi import WSGIApp, WSGIMiddleware

__version__ = "0.1.0"

__all__ = [
    "ASGIApp",
    "ASGIMiddleware",
    "BaselimeAPI",
    "Batch",
    "BetterStackAPI",
    "BodyLimit",
    "CodecNegotiation",
    "CredentialAuth",
    "Event",
    "Events",
    "EventTimes",
    "IngestAPI",
    "IngestError",
    "JSONLinesSink",
    "JSONMemorySink",
    "MemorySink",
    "OTLPLogsAPI",
    "RateLimit",
    "RateLimitASGIMiddleware",
    "RateLimitWSGIMiddleware",
    "Request",
    "Response",
    "SQLiteSink",
    "TimesRule",
    "TrustedProxies",
    "WSGIApp",
    "WSGIMiddleware",
    "parse_dt",
    "sink_from_url",
]
