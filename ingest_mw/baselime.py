"""Baselime's Events API, composed from the same components as Better Stack's.

``POST <mount>/v1/<dataset>`` with ``x-api-key``; the body is a JSON array of
event objects; valid events are stored even when others are refused, and
those are listed under ``invalid`` in a 400. Every response is JSON of the
form ``{"message": ...}`` with the contract's own wording.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import orjson

from .admission import Admission
from .api import IngestAPI, Request, Response
from .auth import CredentialAuth
from .batch import Batch
from .body import BodyLimit
from .codecs import CodecNegotiation, Decoded
from .errors import IngestError
from .eventcaps import MAX_DEPTH, MAX_EVENTS, EventCaps
from .headers import repeated
from .jsonarray import JSONArrayCodec
from .ratelimit import RateLimit, as_rate_limit
from .timestamps import EventTimes

__all__ = ["BaselimeAPI", "DATASET_PATTERN", "MAX_BODY_BYTES", "MAX_EVENT_BYTES", "MAX_INVALID_LISTED"]

#: "up to 6MB of uncompressed data per request" (6 MiB, AWS Lambda's payload limit).
MAX_BODY_BYTES = 6 * 1024 * 1024
#: "Each event must be smaller than 256kb of uncompressed JSON" (256 KiB).
MAX_EVENT_BYTES = 256 * 1024

#: How many refused events a 400 lists (the first ones); past that the answer
#: also says how many there were in ``invalid_count``, so a body of a million
#: tiny bad elements cannot make an answer ten times its own size.
MAX_INVALID_LISTED = 1000

#: A dataset name: 1 to 128 letters, digits, ``-``, ``_`` or ``.``, starting with a letter or digit.
DATASET_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: The first segment of a path of another version of the API (``/v2/logs``):
#: an invalid path parameter, the contract's 400, not a path of no API.
OTHER_VERSION_PATTERN = re.compile(r"[vV][0-9]+")

#: The contract's wording for each status ("Unauthorised" is Baselime's spelling).
MESSAGES = {
    202: "Request Accepted",
    400: "Bad Request",
    401: "Unauthorised",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Error",
    503: "Service Unavailable",
}

_JSON = (("Content-Type", "application/json"),)
_ACCEPTED = Response(202, _JSON, orjson.dumps({"message": MESSAGES[202]}))


def _label(value: str | None) -> str | None:
    """An ``x-service``/``x-namespace`` value: a header sent twice with one
    value is that value; differing ones are kept as sent (a comma may be part
    of a name, so a list cannot be told from one value)."""
    if not value:
        return None
    return repeated(value) or value


def _json(status: int, body: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, _JSON + headers, orjson.dumps(body))


class BaselimeAPI(IngestAPI):
    """The Baselime Events API.

    ``api_keys``: ``{name: key}`` or a list of keys. Events carry their time
    in ``timestamp`` (or ``dt``), parsed like Better Stack's ``dt``; the
    contract sets no bound on past times, so ``max_past`` defaults to none.
    ``max_events``, ``max_depth`` and ``admission`` as for Better Stack.
    """

    name = "baselime"
    title = "Baselime"
    path_pattern = "/v1/<dataset>"

    def __init__(
        self,
        api_keys: Mapping[str, str] | Iterable[str],
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
        max_past: timedelta | None = None,
        rate_limit: RateLimit | str | None = None,
        max_events: int = MAX_EVENTS,
        max_depth: int = MAX_DEPTH,
        admission: Admission | None = None,
    ) -> None:
        caps = EventCaps(max_events=max_events, max_depth=max_depth)
        super().__init__(
            auth=CredentialAuth(
                api_keys,
                header="x-api-key",
                scheme=None,
                status=401,
                detail="missing or invalid x-api-key header",
                notes_other_header=True,
            ),
            body_limit=BodyLimit(max_body_bytes, detail="the request body is larger than {limit} (uncompressed)"),
            codecs=CodecNegotiation([JSONArrayCodec(max_event_bytes=max_event_bytes, caps=caps)]),
            times=EventTimes(fields=("timestamp", "dt"), max_past=max_past),
            rate_limit=as_rate_limit(rate_limit),
            caps=caps,
            admission=admission,
        )

    def match(self, path: str) -> Mapping[str, str] | IngestError | None:
        # Paths under /v1 are Baselime's, a malformed one gets its 400, and so
        # does another version (the contract: "invalid path parameters (v1 or
        # <dataset>)"); any other path is left to the other APIs (or to the
        # mount's 404).
        version, _, dataset = path.strip("/").partition("/")
        if version != "v1":
            if OTHER_VERSION_PATTERN.fullmatch(version):
                return IngestError(400, f"no version {version!r} of the Events API here: send to /v1/<dataset>")
            return None
        if not dataset.strip("/"):
            return IngestError(400, "no dataset in the path: send to /v1/<dataset>")
        if not DATASET_PATTERN.fullmatch(dataset):
            return IngestError(
                400,
                "invalid dataset in /v1/<dataset>: use 1 to 128 letters, digits, '-', '_' or '.',"
                " starting with a letter or digit",
            )
        return {"dataset": dataset}

    def unclaimed(self, path: str) -> IngestError | None:
        # Alone under its mount, as on events.baselime.io: a path without
        # /v1/<dataset> is the contract's "missing path parameters (v1 ...)".
        return IngestError(400, "no /v1/<dataset> in the path: send to /v1/<dataset>, the dataset to store in")

    def batch(self, request: Request, decoded: Decoded) -> Batch:
        batch = super().batch(request, decoded)
        headers = request.headers
        batch.dataset = request.params["dataset"]
        batch.service = _label(headers.get("x-service"))
        batch.namespace = _label(headers.get("x-namespace"))
        # The contract's own example puts "namespace" in an event: an event's
        # own service/namespace wins over the header's (Batch.labels).
        batch.labels_in_events = True
        return batch

    def render(self, error: IngestError, request: Request) -> Response:
        body = {"message": MESSAGES.get(error.status, "Error")}
        if 400 <= error.status < 500 and error.status != 405:
            body["detail"] = error.detail
        return _json(error.status, body, error.headers)

    def accepted(self, decoded: Decoded, request: Request) -> Response:
        if not decoded.invalid:
            return _ACCEPTED
        invalid = [{"index": i, "reason": reason} for i, reason in decoded.invalid[:MAX_INVALID_LISTED]]
        count = len(decoded.invalid)
        stored = len(decoded.events)
        detail = f"{count} of {count + stored} events refused (listed in invalid, by index); " + (
            "the others were stored: resend only the refused ones, fixed" if stored else "none was stored"
        )
        body: dict[str, Any] = {"message": MESSAGES[400], "detail": detail, "invalid": invalid}
        if count > MAX_INVALID_LISTED:
            body["invalid_count"] = count
        return _json(400, body)
