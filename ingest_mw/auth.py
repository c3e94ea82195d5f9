"""Authentication: a credential header mapped to a source name.

Better Stack sends ``Authorization: Bearer <source token>``; Baselime sends
``x-api-key: <key>``. Both are the same rule with another header and scheme,
so both APIs use :class:`CredentialAuth`. The check runs on headers only, before
any of the body is read, and never puts a credential into an error or a log.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from .errors import IngestError
from .headers import repeated

__all__ = ["CredentialAuth", "DEFAULT_SOURCE", "check_credentials"]

#: The source name given to a credential passed without a name.
DEFAULT_SOURCE = "default"


_SHAPE = "{'source name': 'secret', ...} or a list of secrets, each a non-empty string"

#: The headers the APIs take a credential from, as a note names them.
_CREDENTIAL_HEADERS = {"authorization": "Authorization", "x-api-key": "x-api-key"}


def check_credentials(credentials: object) -> list[tuple[str, str]]:
    """``(secret, source name)`` pairs from ``{name: secret}`` or a list of secrets.

    The one check of this shape, for the APIs and for framework settings.
    A lone string is refused rather than read as one secret per character.
    The message names the type of a wrong value, never the value: it is a secret.
    """
    pairs: list[tuple[object, object]] = []
    if isinstance(credentials, Mapping):
        pairs = [(secret, name) for name, secret in credentials.items()]
    elif isinstance(credentials, (list, tuple, set, frozenset)):
        pairs = [(secret, DEFAULT_SOURCE) for secret in credentials]
    elif isinstance(credentials, str):
        raise ValueError(f"must be {_SHAPE}; got a single string (wrap it in a list)")
    else:
        raise ValueError(f"must be {_SHAPE}; got a {type(credentials).__name__}")
    if not pairs:
        raise ValueError(f"must be {_SHAPE}; got an empty {type(credentials).__name__}")
    for index, (secret, name) in enumerate(pairs):
        # Which entry, by its name or place: never the secret itself.
        where = f"the entry {name!r}" if isinstance(name, str) and name else f"entry {index}"
        if not (isinstance(name, str) and name):
            raise ValueError(f"must be {_SHAPE}; {where} has a name that is not a non-empty string")
        if not (isinstance(secret, str) and secret):
            kind = type(secret).__name__
            what = "an empty string" if secret == "" else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
            raise ValueError(f"must be {_SHAPE}; the secret of {where} is {what}")
    return pairs  # type: ignore[return-value]


class CredentialAuth:
    """Map the credential in ``header`` to its source name, or refuse.

    ``credentials`` is either ``{source_name: secret}`` or a list of secrets
    (all named ``"default"``). ``scheme`` is the word before the secret
    (``"Bearer"``), matched case-insensitively; ``None`` takes the whole header
    value as the secret. A refusal raises ``IngestError(status, detail)``;
    with ``notes_other_header``, one of a request that sent no ``header`` but
    the other API's credential header says so (an OTLP exporter posting its
    Bearer token to Baselime's ``/v1/logs``), where an API's detail is free text.
    """

    def __init__(
        self,
        credentials: Mapping[str, str] | Iterable[str],
        *,
        header: str = "authorization",
        scheme: str | None = "Bearer",
        status: int = 401,
        detail: str = "Unauthorized",
        notes_other_header: bool = False,
    ) -> None:
        self.header = header.lower()
        self.scheme = scheme.lower() if scheme else None
        try:
            pairs = check_credentials(credentials)
        except ValueError as exc:
            raise ValueError(f"credentials {exc}") from None
        self._credentials = [(secret.encode(), name) for secret, name in pairs]
        self._refusal = (status, detail)
        self._others = (
            [(name, shown) for name, shown in _CREDENTIAL_HEADERS.items() if name != self.header]
            if notes_other_header
            else []
        )

    def authenticate(self, headers: Mapping[str, str]) -> str:
        """Return the source name for the credential in ``headers`` (lower-case names).

        A header a client sent twice with one credential (``Bearer t, Bearer t``,
        as servers join repeated lines) is that credential; two different ones
        are refused, as neither can be chosen.
        """
        value = headers.get(self.header)
        source = self._source(value)
        if source is None and value:
            once = repeated(value)
            if once is not None:
                source = self._source(once)
        if source is None:
            raise self._refused(headers, value)
        return source

    def _refused(self, headers: Mapping[str, str], value: str | None) -> IngestError:
        status, detail = self._refusal
        if value is None:
            for name, shown in self._others:
                if name in headers:
                    return IngestError(status, f"{detail}: this request sends {shown}, which is not read here")
        return IngestError(status, detail)

    def _source(self, value: str | None) -> str | None:
        presented = b""
        if value:
            if self.scheme is not None:
                scheme, _, value = value.strip().partition(" ")
                value = value if scheme.lower() == self.scheme else ""
            presented = value.strip().encode("utf-8", "surrogateescape")
        source = None
        # Compare against every credential, without an early exit, so the
        # time taken says nothing about which one came close.
        for secret, name in self._credentials:
            if hmac.compare_digest(presented, secret) and source is None:
                source = name
        return source
