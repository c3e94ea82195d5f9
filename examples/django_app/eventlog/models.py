"""The project's own event table; ``INGEST_MW["MODEL"]`` points the ingest endpoints at it."""

from ingest_mw.contrib.django.abstract import AbstractIngestedEvent


class LogEvent(AbstractIngestedEvent):
    """An event a log shipper sent to /ingest/."""
