"""Secrets kept out of messages: a URL or a libpq conninfo shown with its password as ``***``.

Every error and log line that names where events or counts go (a sink URL,
the rate limit's storage URI, a PostgreSQL conninfo) names it through
:func:`masked`, so that one rule decides what a password looks like in all
of them.
"""

from __future__ import annotations

import re

__all__ = ["masked"]

#: A URL: a scheme (white space before it aside), then "://" (a conninfo's
#: values may hold "://" too, after its first "=").
_URL = re.compile(r"\s*[A-Za-z][A-Za-z0-9+._-]*://")
#: What the name of a query key or conninfo keyword that holds a secret holds
#: (libpq's password and sslpassword, redis-py's password and ssl_password, tokens).
_SECRET_WORDS = "password|passwd|secret|token"
_SECRET_NAME = re.compile(_SECRET_WORDS, re.IGNORECASE)
#: A secret query value: its key names a password, a secret or a token.
_QUERY_SECRET = re.compile(rf"([?&;][^=&#]*(?:{_SECRET_WORDS})[^=&#]*=)[^&#]*", re.IGNORECASE)
#: A conninfo ``keyword = value``: the value bare (backslash escapes) or single-quoted (to its end if unclosed).
_CONNINFO_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\s*=\s*)('(?:[^'\\]|\\.)*'?|(?:[^\s\\]|\\.)+)")


def masked(url: str, mask: str = "***") -> str:
    """``url`` with its password shown as ``mask``: in the user information (all
    of it when it is a single value), in any query key or libpq keyword that
    names a password, a secret or a token."""
    if not _URL.match(url):
        return _CONNINFO_PAIR.sub(lambda pair: _masked_pair(pair, mask), url)
    scheme, sep, rest = url.partition("://")
    # The user information ends at the last "@" before the query and the
    # fragment (a password may hold "@" and "/" unencoded; an "@" after "?" is
    # the query's). Then every secret query value, wherever the query starts.
    authority_and_path = re.split(r"[?#]", rest, maxsplit=1)[0]
    userinfo, at, _ = authority_and_path.rpartition("@")
    if not at:  # a "?" or "#" in the password itself, unless a path comes before it (then it is a query)
        before, at, _ = rest.rpartition("@")
        userinfo = before if at and "/" not in re.split(r"[?#]", before, maxsplit=1)[0] else ""
        at = at if userinfo else ""
    if at:
        user, colon, _ = userinfo.partition(":")
        hidden = f"{user}:{mask}" if colon and "/" not in user else mask
        rest = hidden + rest[len(userinfo) :]
    return scheme + sep + _QUERY_SECRET.sub(lambda found: found.group(1) + mask, rest)


def _masked_pair(match: re.Match[str], mask: str) -> str:
    keyword, equals, _ = match.groups()
    return f"{keyword}{equals}{mask}" if _SECRET_NAME.search(keyword) else match.group(0)
