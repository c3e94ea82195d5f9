"""Body limit: refuse by Content-Length, then count every byte read and decoded.

:class:`BodyLimit` holds the rule (a limit in bytes and the 413 it raises);
:class:`BodyReader` is the per-request state an adapter feeds chunks into. The
limit applies to the bytes on the wire and again to the output of every
Content-Encoding layer, so memory stays bounded by the limit whatever a
client sends, compressed or not, with or without a Content-Length.
"""

from __future__ import annotations

from .encoding import Decoder, decoders_for, twice_note
from .errors import IngestError
from .headers import byte_size
from .headers import content_length as parse_content_length

__all__ = ["BodyLimit", "BodyReader"]


class BodyLimit:
    """At most ``max_bytes`` of request body, before and after decompression.

    ``detail`` is the 413 body, ``{limit}`` in it the limit (``20 MiB``); the
    default is Better Stack's own wording with the limit added.
    """

    def __init__(self, max_bytes: int, *, detail: str = "payload reached size limit ({limit})") -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self.detail = detail.replace("{limit}", byte_size(max_bytes))

    def too_large(self) -> IngestError:
        return IngestError(413, self.detail)

    def check_length(self, content_length: str | None) -> None:
        """Refuse at once when the declared Content-Length is over the limit
        (400 for one that is not a length; see :func:`~ingest_mw.headers.content_length`)."""
        if not content_length:
            return
        try:
            length = parse_content_length(content_length)
        except ValueError as exc:
            raise IngestError(400, str(exc)) from None
        if length is not None and length > self.max_bytes:
            raise self.too_large()

    def reader(self, content_encoding: str | None = None) -> BodyReader:
        """A reader for one request body (415 for an unknown Content-Encoding)."""
        return BodyReader(self, decoders_for(content_encoding), content_encoding)


class BodyReader:
    """Collects one request body within its limit, decoding it as it arrives."""

    __slots__ = ("_limit", "_decoders", "_sizes", "_parts", "_content_encoding")

    def __init__(self, limit: BodyLimit, decoders: list[Decoder], content_encoding: str | None = None) -> None:
        self._limit = limit
        self._decoders = decoders
        self._content_encoding = content_encoding  # for the note of a body that does not decode
        # Bytes seen at each stage: index 0 on the wire, i+1 after decoder i.
        self._sizes = [0] * (len(decoders) + 1)
        self._parts: list[bytes] = []

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
            return
        for piece in self._decoders[stage].feed(data):
            self._push(stage + 1, piece)

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
