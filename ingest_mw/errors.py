"""The one error type of the core.

Every component refuses a request by raising :class:`IngestError`. It carries
the HTTP status and a message for the client, so an adapter never decides a
status: it asks the API app to render the error in that API's own body style
(plain text for Better Stack, ``{"message": ...}`` JSON for Baselime).
"""

from __future__ import annotations

from collections.abc import Sequence


class IngestError(Exception):
    """A request refused with ``status``; ``detail`` tells the client what to fix."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        self.headers = tuple(headers)

    def __repr__(self) -> str:
        return f"IngestError({self.status}, {self.detail!r})"
