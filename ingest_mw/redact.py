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

_USERINFO_PASSWORD = re.compile(r"^([^:@/]*):[^@/]*@")
#: Query keys (and conninfo keywords) that hold a secret, in libpq's and redis-py's spellings.
_SECRET_KEYS = frozenset({"password", "sslpassword"})
#: A secret in a libpq ``key=value`` conninfo: its value bare or single-quoted.
_CONNINFO_SECRET = re.compile(r"\b(password|sslpassword)(\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def masked(url: str) -> str:
    """``url`` with its password (in the user information or the query, or
    the ``password=`` of a libpq ``key=value`` conninfo) shown as ``***``."""
    if "://" not in url:
        return _CONNINFO_SECRET.sub(r"\1\2***", url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a malformed URL>"
    shown = url
    netloc = _USERINFO_PASSWORD.sub(r"\1:***@", parts.netloc)
    if netloc != parts.netloc:
        shown = shown.replace(parts.netloc, netloc, 1)  # the first: right after "scheme://"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if any(key.lower() in _SECRET_KEYS for key, _ in pairs):
        hidden = [(key, "***" if key.lower() in _SECRET_KEYS else value) for key, value in pairs]
        shown = shown.replace("?" + parts.query, "?" + urlencode(hidden, safe="*"), 1)
    return shown
