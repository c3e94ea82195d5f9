"""The app's own event model, the default storage when the app is installed."""

from __future__ import annotations

from .abstract import AbstractIngestedEvent


class IngestedEvent(AbstractIngestedEvent):
    """An event received by either API (table ``ingest_mw_ingestedevent``)."""
