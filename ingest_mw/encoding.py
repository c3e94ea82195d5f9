"""Content-Encoding: streaming decompressors whose output comes in bounded pieces.

Each decoder takes compressed bytes and yields the decompressed bytes in
pieces of at most :data:`PIECE` bytes, so the body reader can count every
piece against the limit and stop the moment it is passed: a few kilobytes of
"decompression bomb" never become more than the limit in memory.

Better Stack's own clients compress (the Ruby client sends ``deflate`` with
MessagePack), so gzip and deflate are always available; zstd and br are
available when their optional packages are installed (extras ``zstd``, ``br``).
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from .errors import IngestError

__all__ = ["Decoder", "PIECE", "decoders_for", "supported_encodings", "twice_note"]

#: The largest piece of decompressed output produced at once.
PIECE = 64 * 1024


class Decoder(Protocol):
    """One layer of Content-Encoding."""

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decompress ``data``, yielding output in pieces of at most ``PIECE`` bytes."""
        ...

    def finish(self) -> None:
        """Check that the stream ended where it should; raise ``IngestError`` if not."""
        ...


def _corrupt(name: str, what: str = "is not valid") -> IngestError:
    return IngestError(400, f"request body {what} {name} data (Content-Encoding: {name})")


class _Inflate:
    """gzip (several members allowed, as RFC 1952 says), zlib-wrapped or raw deflate.

    ``deflate`` is zlib-wrapped by RFC 9110 but raw in many clients; the first
    two bytes tell them apart (a zlib header is a multiple of 31).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._head = b""
        self._wbits = 31 if name == "gzip" else 0
        self._inflater: zlib._Decompress | None = None
        self._ended = False

    def _start(self, data: bytes) -> zlib._Decompress:
        if not self._wbits:
            zlib_header = data[0] & 0x0F == 8 and int.from_bytes(data[:2], "big") % 31 == 0
            self._wbits = 15 if zlib_header else -15
        self._ended = False
        return zlib.decompressobj(self._wbits)

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._inflater is None:
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return
            self._inflater = self._start(data)
        inflater = self._inflater
        while data or not self._ended:
            try:
                out = inflater.decompress(data, PIECE)
            except zlib.error:
                raise _corrupt(self.name) from None
            if out:
                yield out
            if inflater.eof:
                self._ended = True
                data = inflater.unused_data
                if not data:
                    return
                if self.name != "gzip":
                    raise _corrupt(self.name, "has trailing bytes after the")
                inflater = self._inflater = self._start(data)
                continue
            data = inflater.unconsumed_tail
            if not data and len(out) < PIECE:
                return

    def finish(self) -> None:
        if self._inflater is None and not self._head:
            return  # an empty body is left for the codec to refuse
        if not self._ended:
            raise _corrupt(self.name, "ends before the end of its")


class _Zstd:
    """zstd, several frames allowed."""

    def __init__(self) -> None:
        self._new = _zstd_decompressor()
        self._decompressor = self._new()
        self._in_frame = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        d = self._decompressor
        while True:
            self._in_frame = self._in_frame or bool(data)
            try:
                out = d.decompress(data, PIECE)
            except Exception as exc:  # ZstdError shares no base class with zlib.error
                raise _corrupt("zstd") from exc
            if out:
                yield out
            if d.eof:
                data = d.unused_data
                d = self._decompressor = self._new()
                self._in_frame = False
                if not data:
                    return
                continue
            if d.needs_input:
                return
            data = b""

    def finish(self) -> None:
        if self._in_frame:
            raise _corrupt("zstd", "ends before the end of its")


class _Brotli:
    def __init__(self) -> None:
        import brotli

        self._error = brotli.error
        self._decompressor = brotli.Decompressor()
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        self._started = self._started or bool(data)
        d = self._decompressor
        try:
            out = d.process(data, output_buffer_limit=PIECE)
            while True:
                if out:
                    yield out
                if d.can_accept_more_data():
                    return
                out = d.process(b"", output_buffer_limit=PIECE)
        except self._error:
            raise _corrupt("br") from None

    def finish(self) -> None:
        if self._started and not self._decompressor.is_finished():
            raise _corrupt("br", "ends before the end of its")


def _zstd_decompressor() -> Callable[[], Any]:
    # The standard library's from 3.14; the backport (extra "zstd") before.
    if sys.version_info >= (3, 14):
        from compression.zstd import ZstdDecompressor
    else:
        from backports.zstd import ZstdDecompressor
    return ZstdDecompressor


def _available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _build_registry() -> dict[str, Callable[[], Decoder]]:
    registry: dict[str, Callable[[], Decoder]] = {
        "gzip": lambda: _Inflate("gzip"),
        "x-gzip": lambda: _Inflate("gzip"),
        "deflate": lambda: _Inflate("deflate"),
    }
    if _available("compression.zstd" if sys.version_info >= (3, 14) else "backports.zstd"):
        registry["zstd"] = _Zstd
    if _available("brotli"):
        registry["br"] = _Brotli
    return registry


_DECODERS = _build_registry()

#: The extra that installs each optional decoder, named in the 415 when it is missing.
_EXTRAS = {"zstd": "zstd", "br": "br"}


def _layers(content_encoding: str | None) -> list[str]:
    """The encodings a Content-Encoding header names, in the order applied,
    lower-case (``identity`` and empty items left out: they change nothing)."""
    if not content_encoding:
        return []
    tokens = (t.strip().lower() for t in content_encoding.split(","))
    return [token for token in tokens if token not in ("", "identity")]


def supported_encodings() -> tuple[str, ...]:
    """The Content-Encoding tokens this installation decodes (``identity`` included)."""
    return ("identity", *_DECODERS)


def decoders_for(content_encoding: str | None) -> list[Decoder]:
    """The decoders for a Content-Encoding header, in the order to apply them.

    Encodings are listed in the order they were applied (RFC 9110 8.4), so they
    are undone from the last to the first; a repeated header is such a list
    too (``gzip, gzip`` is a body compressed twice). An unknown token gets 415.
    """
    decoders: list[Decoder] = []
    if not content_encoding:  # most bodies: nothing to undo
        return decoders
    for token in reversed(_layers(content_encoding)):
        factory = _DECODERS.get(token)
        if factory is None:
            accepted = ", ".join(supported_encodings())
            extra = _EXTRAS.get(token)
            enable = f" (its operator enables {token} with pip install 'ingest-mw[{extra}]')" if extra else ""
            raise IngestError(415, f"unsupported Content-Encoding {token!r}; this server accepts: {accepted}{enable}")
        decoders.append(factory())
    return decoders


def twice_note(content_encoding: str | None) -> str:
    """A note for the 400 of a body that does not decode, when its header names
    one encoding twice in a row (``gzip, gzip``): that means compressed twice,
    which a client that sent the header twice by mistake did not mean."""
    layers = _layers(content_encoding)
    doubled = next((a for a, b in zip(layers, layers[1:]) if a == b), None)
    if doubled is None:
        return ""
    return (
        f"; Content-Encoding names {doubled} twice, which means compressed twice:"
        " send it once for a body compressed once"
    )
