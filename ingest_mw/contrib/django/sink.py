"""A storage hook that writes each batch to a Django model."""

from __future__ import annotations

import orjson
from django.db import models, router, transaction

from ...batch import Batch, event_json
from ...sinks.record import COLUMNS

__all__ = ["ModelSink"]


class ModelSink:
    """Store each event as a row of ``model``: one ``bulk_create`` in one transaction per batch.

    ``model`` needs the fields of
    :class:`~ingest_mw.contrib.django.abstract.AbstractIngestedEvent`. The batch is
    committed before the hook returns, so before the client is told 202.
    """

    #: Under ASGI, run on the one thread Django's ORM expects (see ``ingest_mw.sinks.as_async``).
    thread_sensitive = True

    def __init__(self, model: type[models.Model], *, using: str | None = None) -> None:
        fields = {field.name for field in model._meta.get_fields()}
        missing = [name for name in COLUMNS if name not in fields]
        if missing:
            raise ValueError(
                f"model {model._meta.label} has no field {', '.join(missing)}: subclass"
                " ingest_mw.contrib.django.abstract.AbstractIngestedEvent"
            )
        self.model = model
        self.using = using

    def __call__(self, batch: Batch) -> None:
        model = self.model
        shared = {"received_at": batch.received_at, "api": batch.api, "source": batch.source, "dataset": batch.dataset}
        rows = []
        for event in batch.events:
            service, namespace = batch.labels(event.data)
            # event_json makes MessagePack-only values (bytes, timestamps) JSON as
            # the file sinks store them; a JSONField would refuse them.
            data = orjson.loads(event_json(event.data))
            rows.append(model(dt=event.time, data=data, service=service, namespace=namespace, **shared))
        using = self.using or router.db_for_write(model)
        with transaction.atomic(using=using):
            model._default_manager.using(using).bulk_create(rows)
