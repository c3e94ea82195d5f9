"""Body limit: refuse by Content-Length, then count every byte read and decoded.

:class:`BodyLimit` holds the rule (a limit in bytes and the 413 it raises);
:class:`BodyReader` is the per-request state an adapter feeds chunks into. The
limit applies to the bytes on the wire and again to the output of every
Content-Encoding layer, so memory stays bounded by the limit whatever a
client sends, compressed or not, with or without a Content-Length.
"""

from __future__ import annotations

from .encoding import Decoder, decoders_for
from .errors import IngestError

__all__ = ["BodyLimit", "BodyReader"]


class BodyLimit:
    """At most ``max_bytes`` of request body, before and after decompression.

    ``detail`` is the 413 body; the default is Better Stack's own wording.
    """

    def __init__(self, max_bytes: int, *, detail: str = "payload reached size limit") -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self.detail = detail

    def too_large(self) -> IngestError:
        return IngestError(413, self.detail)

    def check_length(self, content_length: str | None) -> None:
        """Refuse at once when the declared Content-Length is over the limit."""
        value = (content_length or "").strip()
        if not value:
            return
        if not (value.isascii() and value.isdigit()):
            raise IngestError(400, f"invalid Content-Length {value[:40]!r}")
        if int(value) > self.max_bytes:
            raise self.too_large()

    def reader(self, content_encoding: str | None = None) -> BodyReader:
        """A reader for one request body (415 for an unknown Content-Encoding)."""
        return BodyReader(self, decoders_for(content_encoding))


class BodyReader:
    """Collects one request body within its limit, decoding it as it arrives."""

    __slots__ = ("_limit", "_decoders", "_sizes", "_parts")

    def __init__(self, limit: BodyLimit, decoders: list[Decoder]) -> None:
        self._limit = limit
        self._decoders = decoders
        # Bytes seen at each stage: index 0 on the wire, i+1 after decoder i.
        self._sizes = [0] * (len(decoders) + 1)
        self._parts: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the body; raises 413 the moment the limit is passed."""
        if chunk:
            self._push(0, chunk)

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

    @property
    def wire_bytes(self) -> int:
        """The bytes of the body fed so far, as sent (before any Content-Encoding is undone)."""
        return self._sizes[0]

    def finish(self) -> bytes:
        """The whole decoded body, once the last chunk has been fed."""
        for decoder in self._decoders:
            decoder.finish()
        parts = self._parts
        return parts[0] if len(parts) == 1 else b"".join(parts)
