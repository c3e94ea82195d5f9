"""A read-only admin for stored events, reusable for a project's own event model."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib import admin
from django.http import HttpRequest

__all__ = ["IngestedEventAdmin"]


class IngestedEventAdmin(admin.ModelAdmin):
    """Events are a record of what clients sent: they can be viewed and deleted, not edited."""

    list_display = ("dt", "api", "source", "dataset", "service", "namespace", "received_at")
    list_filter = ("api", "source", "dataset")
    search_fields = ("source", "dataset", "service", "namespace")
    date_hierarchy = "dt"
    ordering = ("-dt",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# A project that only borrows IngestedEventAdmin need not install the app
# (whose models module could not be imported then).
if apps.is_installed("ingest_mw.contrib.django"):
    from .models import IngestedEvent

    admin.site.register(IngestedEvent, IngestedEventAdmin)
