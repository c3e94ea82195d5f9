"""Header values a client sent more than once.

A header repeated on the wire reaches the APIs as one value: servers join
repeated lines with commas (RFC 9110 section 5.3), and so does a client's own
``fetch()`` when it is given one header under two spellings
(``Content-Type: application/json, application/json``). Each header's rule
lives where that header is read; this module is the one way to split such a
value and to tell a repetition from a list.
"""

from __future__ import annotations

import re

__all__ = ["SIZE_LIMIT_HEADER", "byte_size", "content_length", "parts", "repeated"]

#: The response header of a 413 that names the limit in force (``20 MiB``),
#: also where an API's contract fixes the body's words.
SIZE_LIMIT_HEADER = "X-Size-Limit"


#: One comma-separated part: anything but commas and quotes, or a quoted
#: string (RFC 9110 section 5.6.4), whose commas are its own.
_PART = re.compile(r'(?:[^,"]|"(?:\\.|[^"\\])*"?)+')


def parts(value: str) -> list[str]:
    """The comma-separated parts of a header value, stripped, empty ones left
    out; a comma inside a quoted string (``charset="a,b"``) splits nothing."""
    return [part for part in (match.group().strip() for match in _PART.finditer(value)) if part]


def repeated(value: str) -> str | None:
    """The one value of a header sent several times with the same value
    (``"x, x"`` -> ``"x"``); ``None`` when its parts differ or it has no comma."""
    if "," not in value:
        return None
    found = parts(value)
    if found and all(part == found[0] for part in found):
        return found[0]
    return None


def content_length(value: str | None) -> int | None:
    """The length a Content-Length header declares; ``None`` when there is none.

    The same length sent twice (``"12, 12"``) is that length (RFC 9110
    section 8.6); differing ones, or anything but digits, are a ``ValueError``.
    """
    value = (value or "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return int(value)
    once = repeated(value)
    if once is not None and once.isascii() and once.isdigit():
        return int(once)
    if "," in value:
        raise ValueError(f"conflicting Content-Length values {value[:40]!r}: send one")
    raise ValueError(f"invalid Content-Length {value[:40]!r}")


def byte_size(count: int) -> str:
    """A size for a message: ``20 MiB``, ``256 KiB``, ``1000000 bytes``."""
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if count % size == 0:
            return f"{count // size} {unit}"
    return f"{count} bytes"


def rounded_size(count: int) -> str:
    """A measured size for a message, rounded: ``1.9 MiB``, ``712 bytes``."""
    return f"{count / (1024 * 1024):.1f} MiB" if count >= 1024 * 1024 else f"{count} bytes"
