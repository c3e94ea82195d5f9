"""Body limit: refuse by Content-Length, then count every byte read and decoded.

:class:`BodyLimit` holds the rule (a limit in bytes and the 413 it raises);
:class:`BodyReader` is the per-request state an adapter feeds chunks into. The
limit applies to the bytes on the wire and again to the output of every
Content-Encoding layer, so memory stays bounded by the limit whatever a
client sends, compressed or not, with or without a Content-Length.
"""

from __future__ import annotations

import math

from .admission import FREE_BODY_BYTES, Admission
from .encoding import Decoder, decoders_for, twice_note
from .errors import IngestError
from .headers import SIZE_LIMIT_HEADER, byte_size
from .headers import content_length as parse_content_length

__all__ = ["SIZE_LIMIT_HEADER", "BodyLimit", "BodyReader", "framing_conflict"]


def framing_conflict() -> IngestError:
    """The 400 for a request whose body length is told two ways, Content-Length
    and Transfer-Encoding (RFC 9112 6.3): a proxy in front that believes the
    other one would see a different request (request smuggling)."""
    return IngestError(400, "Content-Length and Transfer-Encoding together: send one of them")


class BodyLimit:
    """At most ``max_bytes`` of request body, before and after decompression.

    ``detail`` is the 413 body, ``{limit}`` in it the limit (``20 MiB``),
    which the 413 also gives in its ``X-Size-Limit`` header.
    """

    def __init__(self, max_bytes: int, *, detail: str = "the request body is over {limit}") -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        limit = byte_size(max_bytes)
        self.detail = detail.replace("{limit}", limit)
        self._headers = ((SIZE_LIMIT_HEADER, limit),)

    def too_large(self) -> IngestError:
        return IngestError(413, self.detail, headers=self._headers)

    def check_length(self, content_length: str | None) -> int | None:
        """The declared Content-Length (``None`` without one); 413 at once when
        it is over the limit (400 for one that is not a length; see
        :func:`~ingest_mw.headers.content_length`)."""
        if not content_length:
            return None
        try:
            length = parse_content_length(content_length)
        except ValueError as exc:
            raise IngestError(400, str(exc)) from None
        if length is not None and length > self.max_bytes:
            raise self.too_large()
        return length

    def reader(
        self, content_encoding: str | None = None, admission: Admission | None = None, taken: int = 0
    ) -> BodyReader:
        """A reader for one request body (415 for an unknown Content-Encoding),
        counting what it keeps against ``admission``'s byte budget, of which
        it holds ``taken`` already (see :attr:`BodyReader.taken`)."""
        return BodyReader(self, decoders_for(content_encoding), content_encoding, admission, taken)


class BodyReader:
    """Collects one request body within its limit, decoding it as it arrives."""

    __slots__ = ("_limit", "_decoders", "_sizes", "_parts", "_content_encoding", "_admission", "taken", "_held_limit")

    def __init__(
        self,
        limit: BodyLimit,
        decoders: list[Decoder],
        content_encoding: str | None = None,
        admission: Admission | None = None,
        taken: int = 0,
    ) -> None:
        self._limit = limit
        self._decoders = decoders
        self._content_encoding = content_encoding  # for the note of a body that does not decode
        # Bytes seen at each stage: index 0 on the wire, i+1 after decoder i.
        self._sizes = [0] * (len(decoders) + 1)
        self._parts: list[bytes] = []
        self._admission = admission
        #: The bytes of the admission's shared budget this body holds: the
        #: flow gives them back when the request is done.
        self.taken = taken
        # The body may keep this many bytes (decompressed) before it must take more.
        self._held_limit: float = math.inf if admission is None else taken + FREE_BODY_BYTES

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the body; raises 413 the moment the limit is passed."""
        if chunk:
            try:
                self._push(0, chunk)
            except IngestError as error:
                raise self._noted(error) from None

    def _push(self, stage: int, data: bytes) -> None:
        size = self._sizes[stage] + len(data)
        if size > self._limit.max_bytes:
            raise self._limit.too_large()
        self._sizes[stage] = size
        if stage == len(self._decoders):
            self._parts.append(data)
            if size > self._held_limit:
                self._take_more(size)
            return
        for piece in self._decoders[stage].feed(data):
            self._push(stage + 1, piece)

    @property
    def wire_bytes(self) -> int:
        """The bytes of the body fed so far, as sent (before any Content-Encoding is undone)."""
        return self._sizes[0]

    def _take_more(self, held: int) -> None:
        assert self._admission is not None
        self.taken = self._admission.grow(self.taken, held)  # or the 503
        self._held_limit = self.taken + FREE_BODY_BYTES

    def finish(self) -> bytes:
        """The whole decoded body, once the last chunk has been fed."""
        try:
            for decoder in self._decoders:
                decoder.finish()
        except IngestError as error:
            raise self._noted(error) from None
        parts = self._parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _noted(self, error: IngestError) -> IngestError:
        """``error``, a body that did not decode, with a note when the header
        names one encoding twice in a row (see :func:`~ingest_mw.encoding.twice_note`)."""
        note = twice_note(self._content_encoding) if error.status == 400 else ""
        return IngestError(error.status, error.detail + note, headers=error.headers) if note else error
