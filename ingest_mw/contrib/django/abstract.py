"""The fields :class:`~ingest_mw.contrib.django.sink.ModelSink` writes, as an abstract model.

Kept apart from ``models.py`` so that a project can subclass it for a model of
its own without installing this app (importing ``models.py`` would need it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models


class AbstractIngestedEvent(models.Model):
    """One stored event: the columns of the SQLite sink's ``events`` table."""

    received_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(
        help_text="When the request arrived (UTC)."
    )
    dt: models.DateTimeField[datetime, datetime] = models.DateTimeField(
        "event time",
        db_index=True,
        help_text="The event's own time (dt, timestamp; OTLP: time_unix_nano), else received_at.",
    )
    api: models.CharField[str, str] = models.CharField(max_length=32, help_text='"betterstack", "baselime" or "otlp".')
    source: models.TextField[str, str] = models.TextField(help_text="The name of the token or API key used.")
    dataset: models.CharField[str | None, str | None] = models.CharField(
        max_length=128, null=True, blank=True, help_text="Baselime only."
    )
    service: models.TextField[str | None, str | None] = models.TextField(
        null=True,
        blank=True,
        help_text="Baselime: the event's own, else x-service; OTLP: the resources' service.name.",
    )
    namespace: models.TextField[str | None, str | None] = models.TextField(
        null=True,
        blank=True,
        help_text="Baselime: the event's own, else x-namespace; OTLP: the resources' service.namespace.",
    )
    data: models.JSONField[Any, Any] = models.JSONField(help_text="The event object as the client sent it.")

    class Meta:
        abstract = True
        get_latest_by = "dt"

    def __str__(self) -> str:
        return f"{self.api} event from {self.source} at {self.dt:%Y-%m-%d %H:%M:%S}"
