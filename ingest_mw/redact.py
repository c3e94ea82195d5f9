"""Secrets kept out of messages: a URL or a libpq conninfo shown with its password as ``***``.

Every error and log line that names where events or counts go (a sink URL,
the rate limit's storage URI, a PostgreSQL conninfo) names it through
:func:`masked`, so that one rule decides what a password looks like in all
of them.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["masked"]

#: A URL: a scheme (white space before it aside), then "://" (a conninfo's
#: values may hold "://" too, after its first "=").
_URL = re.compile(r"\s*[A-Za-z][A-Za-z0-9+._-]*://")
#: Query keys and conninfo keywords that hold a secret, by what their names hold
#: (libpq's password and sslpassword, redis-py's password and ssl_password, tokens).
_SECRET_NAME = re.compile(r"password|passwd|secret|token", re.IGNORECASE)
#: A conninfo ``keyword = value``: the value bare (backslash escapes) or single-quoted (to its end if unclosed).
_CONNINFO_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\s*=\s*)('(?:[^'\\]|\\.)*'?|(?:[^\s\\]|\\.)+)")


def masked(url: str) -> str:
    """``url`` with its password shown as ``***``: in the user information (all
    of it when it is a single value), in any query key or libpq keyword that
    names a password, a secret or a token."""
    if not _URL.match(url):
        return _CONNINFO_PAIR.sub(_masked_pair, url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a malformed URL>"
    shown = url
    # The user information ends at the last "@" of the URL, not of urlsplit's
    # netloc: a password may hold "@", "/", "?" or "#" unencoded.
    scheme, sep, rest = url.partition("://")
    userinfo, at, after = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        shown = f"{scheme}{sep}{user}:***@{after}" if colon and "/" not in user else f"{scheme}{sep}***@{after}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(_SECRET_NAME.search(key) for key, _ in pairs):
        hidden = [(key, "***" if _SECRET_NAME.search(key) else value) for key, value in pairs]
        shown = shown.replace("?" + parts.query, "?" + urlencode(hidden, safe="*"), 1)
    return shown


def _masked_pair(match: re.Match[str]) -> str:
    keyword, equals, _ = match.groups()
    return f"{keyword}{equals}***" if _SECRET_NAME.search(keyword) else match.group(0)
