"""The installable app: start-up validation and the ``IngestedEvent`` model."""

from __future__ import annotations

from django.apps import AppConfig


class IngestMWConfig(AppConfig):
    name = "ingest_mw.contrib.django"
    label = "ingest_mw"  # "django", the default, would read as Django's own
    verbose_name = "Ingested logs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import conf

        # A wrong INGEST_MW stops start-up (and every manage.py command) with
        # ImproperlyConfigured, instead of failing the first log shipper.
        conf.endpoint()
