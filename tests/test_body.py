"""BodyLimit and Content-Encoding, as plain objects fed plain bytes."""

import gzip
import tracemalloc
import zlib

import brotli
import pytest
from backports import zstd

from ingest_mw import BodyLimit, IngestError
from ingest_mw.encoding import PIECE, supported_encodings

PAYLOAD = b'{"message":"hello"}' * 500


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


ENCODERS = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,  # zlib-wrapped, as RFC 9110 says
    "zstd": zstd.compress,
    "br": brotli.compress,
    "identity": lambda data: data,
}


def read(limit: BodyLimit, body: bytes, encoding: str | None = None, chunk: int = 7) -> bytes:
    reader = limit.reader(encoding)
    for start in range(0, len(body), chunk):
        reader.feed(body[start : start + chunk])
    return reader.finish()


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
@pytest.mark.parametrize("chunk", [1, 5, 4096, 10**7])
def test_each_encoding_streams(encoding, chunk):
    assert read(BodyLimit(10**6), ENCODERS[encoding](PAYLOAD), encoding, chunk) == PAYLOAD


def test_raw_deflate_and_case_and_spaces():
    assert read(BodyLimit(10**6), raw_deflate(PAYLOAD), " Deflate ") == PAYLOAD


def test_stacked_encodings_are_undone_last_first():
    body = brotli.compress(gzip.compress(PAYLOAD))  # gzip applied first, then br
    assert read(BodyLimit(10**6), body, "gzip, br") == PAYLOAD


def test_multi_member_gzip_and_multi_frame_zstd():
    assert read(BodyLimit(10**6), gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip") == b"abcd"
    assert read(BodyLimit(10**6), zstd.compress(b"ab") + zstd.compress(b"cd"), "zstd") == b"abcd"


def test_unknown_encoding_is_415_listing_what_is_accepted():
    with pytest.raises(IngestError) as info:
        BodyLimit(100).reader("compress")
    assert info.value.status == 415
    for name in supported_encodings():
        assert name in info.value.detail


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd", "br"])
def test_corrupt_and_truncated_streams_are_400(encoding):
    good = ENCODERS[encoding](PAYLOAD)
    for body in (b"\x00not compressed at all\xff" * 3, good[: len(good) // 2]):
        with pytest.raises(IngestError) as info:
            read(BodyLimit(10**6), body, encoding)
        assert info.value.status == 400
        assert encoding in info.value.detail


def test_content_length_over_limit_is_413_at_once():
    limit = BodyLimit(100)
    limit.check_length("100")
    limit.check_length(None)
    with pytest.raises(IngestError) as info:
        limit.check_length("101")
    assert (info.value.status, info.value.detail) == (413, "the request body is over 100 bytes")
    assert info.value.headers == (("X-Size-Limit", "100 bytes"),)
    with pytest.raises(IngestError) as info:
        limit.check_length("12abc")
    assert info.value.status == 400


def test_streamed_body_stops_at_the_limit():
    reader = BodyLimit(100).reader(None)
    reader.feed(b"x" * 100)
    with pytest.raises(IngestError) as info:
        reader.feed(b"x")
    assert info.value.status == 413


BOMB_ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd": zstd.compress,
    "br": lambda data: brotli.compress(data, quality=1),
}


@pytest.mark.parametrize("encoding", sorted(BOMB_ENCODERS))
def test_decompression_bomb_stops_at_the_limit_in_bounded_memory(encoding):
    limit = 1024 * 1024
    bomb = BOMB_ENCODERS[encoding](b"\0" * (64 * limit))  # 64 MiB of zeros
    assert len(bomb) < limit // 4
    reader = BodyLimit(limit).reader(encoding)
    tracemalloc.start()
    try:
        with pytest.raises(IngestError) as info:
            for start in range(0, len(bomb), 65536):
                reader.feed(bomb[start : start + 65536])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.status == 413
    assert peak < 2 * limit + 4 * PIECE  # the kept body plus a few pieces, never the 64 MiB
