"""Better Stack's "Ingesting logs" HTTP API, as a composition of the core components.

``POST`` to the mount root with ``Authorization: Bearer <source token>``; one
event object or a list of them, in JSON, NDJSON or MessagePack; ``202`` with
an empty body once stored. Error bodies are plain text, in the live
service's own words where the contract gives them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta

from .admission import Admission
from .api import IngestAPI, Request, Response
from .auth import CredentialAuth
from .body import BodyLimit
from .codecs import CodecNegotiation, Decoded, JSONCodec, MsgPackCodec, NDJSONCodec
from .errors import IngestError
from .eventcaps import MAX_DEPTH, MAX_EVENTS, EventCaps
from .http import PLAIN_TEXT
from .ratelimit import RateLimit, as_rate_limit
from .timestamps import EventTimes

__all__ = ["BetterStackAPI", "MAX_BODY_BYTES", "RATE_LIMIT"]

#: "The maximum allowed size of a single request is 20 MiB."
MAX_BODY_BYTES = 20 * 1024 * 1024
#: "The HTTP REST API is limited to 500 requests per minute from a single IP."
RATE_LIMIT = "500/minute"

_ACCEPTED = Response(202, (), b"")


class BetterStackAPI(IngestAPI):
    """The Better Stack ingest API.

    ``tokens``: ``{source_name: token}`` or a list of tokens. ``max_past``:
    how old an event's ``dt`` may be before the reception time is used
    instead (the contract's 15 minutes; ``None`` for no bound).
    ``rate_limit``: the contract's 500 requests a minute per client IP, in
    memory, by default; a limits string for another limit, a
    :class:`~ingest_mw.ratelimit.RateLimit` for another key or storage (Redis,
    to share it between processes), ``None`` for no limit. ``max_events``
    and ``max_depth``: the caps of :class:`~ingest_mw.eventcaps.EventCaps`.
    ``admission``: the process-wide limits
    (:class:`~ingest_mw.admission.Admission`; default: the process's shared one).
    """

    name = "betterstack"
    title = "Better Stack"
    path_pattern = "/"

    def __init__(
        self,
        tokens: Mapping[str, str] | Iterable[str],
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_past: timedelta | None = timedelta(minutes=15),
        rate_limit: RateLimit | str | None = RATE_LIMIT,
        max_events: int = MAX_EVENTS,
        max_depth: int = MAX_DEPTH,
        admission: Admission | None = None,
    ) -> None:
        caps = EventCaps(max_events=max_events, max_depth=max_depth)
        super().__init__(
            # 403 "Unauthorized" is what the live service answers, not 401.
            auth=CredentialAuth(tokens, header="authorization", scheme="Bearer", status=403),
            # The contract's words as they are; the limit is in the X-Size-Limit header.
            body_limit=BodyLimit(max_body_bytes, detail="payload reached size limit"),
            codecs=CodecNegotiation([JSONCodec(caps=caps), NDJSONCodec(caps=caps), MsgPackCodec(caps=caps)]),
            times=EventTimes(fields=("dt",), max_past=max_past),
            rate_limit=as_rate_limit(rate_limit),
            caps=caps,
            admission=admission,
        )

    def match(self, path: str) -> Mapping[str, str] | IngestError | None:
        return {} if path in ("", "/") else None

    def render(self, error: IngestError, request: Request) -> Response:
        return Response(error.status, (PLAIN_TEXT, *error.headers), error.detail.encode())

    def accepted(self, decoded: Decoded, request: Request) -> Response:
        return _ACCEPTED
