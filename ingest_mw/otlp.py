"""OpenTelemetry logs over HTTP (OTLP/HTTP), composed from the same components as the other APIs.

``POST <mount>/v1/logs`` with ``Authorization: Bearer <token>``; the body an
``ExportLogsServiceRequest`` in binary protobuf (``application/x-protobuf``)
or the OTLP JSON mapping (``application/json``), gzip or any encoding the
body limit handles. Each ``LogRecord`` is one event (:mod:`ingest_mw.otlplogs`).
Every answer is a protobuf message in the request's encoding: ``200`` with an
``ExportLogsServiceResponse`` (its ``partial_success`` counting the records
refused, the others stored), and ``google.rpc.Status`` with every 4xx and
5xx, as the OTLP specification asks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from types import ModuleType
from typing import TYPE_CHECKING, cast

from .admission import Admission
from .api import IngestAPI, Request, Response
from .auth import CredentialAuth
from .batch import Batch
from .body import BodyLimit
from .codecs import CodecNegotiation, Decoded
from .errors import IngestError
from .eventcaps import MAX_DEPTH, MAX_EVENTS, EventCaps
from .ratelimit import RateLimit, as_rate_limit
from .timestamps import EventTimes

if TYPE_CHECKING:
    from .otlplogs import OTLPCodec

__all__ = [
    "DEFAULT_PATH",
    "MAX_BODY_BYTES",
    "MAX_RECORD_BYTES",
    "MAX_REJECTIONS_LISTED",
    "MAX_SHARED_BYTES",
    "OTLPLogsAPI",
    "PATH_BESIDE_BASELIME",
]

#: The specification's default path for logs.
DEFAULT_PATH = "/v1/logs"
#: Where ``ingest-mw serve`` and the framework glue serve it: Baselime owns
#: ``/v1/<dataset>`` under the same mount, and ``logs`` is a valid dataset.
#: Exporters append ``/v1/logs`` to ``OTEL_EXPORTER_OTLP_ENDPOINT``, so that
#: base is ``http://HOST:PORT/otlp``.
PATH_BESIDE_BASELIME = "/otlp/v1/logs"
#: After decompression too. The specification recommends 64 MiB ("It is
#: RECOMMENDED to use 64 MiB as the default limit", and as what exporters
#: send at most); 20 MiB is the default here, as for Better Stack: a body of
#: tiny values decodes to some 25 times its size in objects (1.7 GB for 64
#: MiB, measured), and two decodes run at once, where 20 MiB keeps a server
#: near 1 GiB. SDK batches (512 records) and a Collector's (8,192) are far
#: smaller; a host whose exporters send more raises ``max_body_bytes``.
MAX_BODY_BYTES = 20 * 1024 * 1024
#: The largest record stored (its size as sent); a larger one is refused on
#: its own and counted in ``partial_success``. The specification sets no
#: bound: 1 MiB keeps one runaway record (a whole file logged as a body) out
#: of the sinks while leaving room for any real log line and stack trace.
MAX_RECORD_BYTES = 1024 * 1024
#: What the copies of resources and scopes may add to one request's stored
#: events: each record is stored with its own copy, so a small body (20,000
#: tiny records under one resource of 1,000 attributes, 162 KB) would store
#: 400 MB, where a Collector's batch of 8,192 records under a 2 KB Kubernetes
#: resource stores 16 MB. Past it: 413.
MAX_SHARED_BYTES = 64 * 1024 * 1024
#: How many refused records ``partial_success.error_message`` names (the
#: first ones); it always says how many there were.
MAX_REJECTIONS_LISTED = 10

#: ``google.rpc.Code`` for the statuses the flow answers with (the
#: specification does not use ``Status.code``; clients may log it).
_RPC_CODES = {
    400: 3,  # INVALID_ARGUMENT
    401: 16,  # UNAUTHENTICATED
    405: 12,  # UNIMPLEMENTED
    408: 4,  # DEADLINE_EXCEEDED: the body stalled (admission's body_idle_timeout)
    413: 3,  # INVALID_ARGUMENT: a body too large is the client's to fix
    415: 3,
    429: 8,  # RESOURCE_EXHAUSTED
    500: 13,  # INTERNAL
    503: 14,  # UNAVAILABLE
}


def _otlp_classes() -> ModuleType:
    """:mod:`ingest_mw.otlplogs`, imported when an app is made: the package
    imports without the ``otlp`` extra, and says what to install when it is needed."""
    try:
        from . import otlplogs
    except ImportError as exc:
        raise ImportError(
            f"OTLPLogsAPI needs the OpenTelemetry protobuf classes ({exc}): pip install 'ingest-mw[otlp]'"
        ) from exc
    return otlplogs


class OTLPLogsAPI(IngestAPI):
    """The OTLP/HTTP logs endpoint.

    ``tokens``: ``{source_name: token}`` or a list of tokens, sent as
    ``Authorization: Bearer <token>`` (``OTEL_EXPORTER_OTLP_HEADERS``); a
    refused one gets 401 before the body is read. ``path``: where below the
    mount it answers. ``max_past``: how old a record's time may be before the
    reception time is used instead (``None``, the default: the specification
    sets no bound). ``rate_limit``: none by default; a limits string or a
    :class:`~ingest_mw.ratelimit.RateLimit` answers 429 with ``Retry-After``,
    which exporters honour. ``max_events`` (records a request), ``max_depth``
    and ``admission``: as for Better Stack.
    """

    name = "otlp"
    title = "OTLP logs"

    def __init__(
        self,
        tokens: Mapping[str, str] | Iterable[str],
        *,
        path: str = DEFAULT_PATH,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_record_bytes: int = MAX_RECORD_BYTES,
        max_shared_bytes: int = MAX_SHARED_BYTES,
        max_past: timedelta | None = None,
        rate_limit: RateLimit | str | None = None,
        max_events: int = MAX_EVENTS,
        max_depth: int = MAX_DEPTH,
        admission: Admission | None = None,
    ) -> None:
        if not isinstance(path, str) or not path.startswith("/") or path != path.strip() or path == "/":
            raise ValueError(f"path must be a path below the mount such as {DEFAULT_PATH!r}, not {path!r}")
        self.path_pattern = path.rstrip("/")
        classes = self._classes = _otlp_classes()
        caps = EventCaps(max_events=max_events, max_depth=max_depth)
        body_limit = BodyLimit(max_body_bytes, detail="the request body is over {limit} (decompressed too)")
        limits = {"max_record_bytes": max_record_bytes, "caps": caps, "max_shared_bytes": max_shared_bytes}
        self._protobuf: OTLPCodec = classes.OTLPProtobufCodec(**limits)
        json = classes.OTLPJSONCodec(**limits)
        super().__init__(
            auth=CredentialAuth(
                tokens,
                header="authorization",
                scheme="Bearer",
                status=401,
                detail="missing or invalid token: send Authorization: Bearer <token>",
                notes_other_header=True,
            ),
            body_limit=body_limit,
            codecs=CodecNegotiation([self._protobuf, json]),
            times=EventTimes(fields=classes.TIME_FIELDS, max_past=max_past, units_per_second=10**9),
            rate_limit=as_rate_limit(rate_limit),
            caps=caps,
            admission=admission,
        )
        # The answer of a request whose every record was stored, in each encoding.
        empty = classes.ExportLogsServiceResponse()
        self._success = {
            codec: Response(200, (("Content-Type", codec.response_type),), codec.encode(empty))
            for codec in (self._protobuf, json)
        }

    def match(self, path: str) -> Mapping[str, str] | IngestError | None:
        return {} if path.rstrip("/") == self.path_pattern else None

    def _codec(self, request: Request) -> OTLPCodec:
        """The encoding to answer in: the request's, or binary protobuf (the
        specification's default) when it sent none this API reads."""
        try:
            codec = self.codecs.negotiate(request.headers.get("content-type"))
        except IngestError:
            return self._protobuf
        return cast("OTLPCodec", codec)  # this API negotiates between its two OTLP codecs only

    def batch(self, request: Request, decoded: Decoded) -> Batch:
        batch = super().batch(request, decoded)
        if isinstance(decoded, self._classes.OTLPDecoded):
            batch.service = decoded.service
            batch.namespace = decoded.namespace
        return batch

    def render(self, error: IngestError, request: Request) -> Response:
        codec = self._codec(request)
        status = self._classes.Status(code=_RPC_CODES.get(error.status, 2), message=error.detail)  # 2: UNKNOWN
        return Response(error.status, (("Content-Type", codec.response_type), *error.headers), codec.encode(status))

    def accepted(self, decoded: Decoded, request: Request) -> Response:
        codec = self._codec(request)
        rejected = len(decoded.invalid)
        if not rejected:
            note = decoded.note if isinstance(decoded, self._classes.OTLPDecoded) else None
            if note is None:
                return self._success[codec]
            # Nothing refused, nothing stored, and a likely reason why: the
            # specification's warning, zero rejected with an error message.
            return self._partial_success(codec, 0, note)
        listed = "; ".join(f"record {index}: {reason}" for index, reason in decoded.invalid[:MAX_REJECTIONS_LISTED])
        more = f"; and {rejected - MAX_REJECTIONS_LISTED} more" if rejected > MAX_REJECTIONS_LISTED else ""
        stored = len(decoded.events)
        message = (
            f"{rejected} log record{'s' if rejected != 1 else ''} rejected, {stored} stored"
            f" (records numbered from 0 in request order): {listed}{more}"
        )
        return self._partial_success(codec, rejected, message)

    def _partial_success(self, codec: OTLPCodec, rejected: int, message: str) -> Response:
        classes = self._classes
        partial = classes.ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=message)
        answer = classes.ExportLogsServiceResponse(partial_success=partial)
        return Response(200, (("Content-Type", codec.response_type),), codec.encode(answer))
