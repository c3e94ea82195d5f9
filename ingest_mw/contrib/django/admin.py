"""A read-only admin for stored events, reusable for a project's own event model."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from ...read.query import MESSAGE_FIELDS, first_text

__all__ = ["IngestedEventAdmin"]

#: The longest message shown in the list of events.
MESSAGE_LENGTH = 120


if TYPE_CHECKING:  # django-stubs makes ModelAdmin generic; Django's own class is not subscriptable
    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _ModelAdmin = admin.ModelAdmin


class IngestedEventAdmin(_ModelAdmin):
    """Events are a record of what clients sent: they can be viewed and deleted,
    not edited. The list shows each event's message, the detail page the whole
    event, and the search covers its data."""

    list_display = ("dt", "message", "api", "source", "dataset", "service", "namespace", "received_at")
    list_filter = ("api", "source", "dataset")
    # "data" searches the event's JSON text (JSONField's icontains).
    search_fields = ("source", "dataset", "service", "namespace", "data")
    date_hierarchy = "dt"
    ordering = ("-dt",)
    fields = ("received_at", "dt", "api", "source", "dataset", "service", "namespace", "event")
    readonly_fields = ("event",)

    @admin.display(description="message")
    def message(self, obj: Any) -> str:
        """The event's message as ``tail`` reads it (``message``, else ``msg``, else
        ``body``: an OTLP record's), else its first text field, cut to 120 characters."""
        data = obj.data if isinstance(obj.data, dict) else {}
        text = first_text(data, MESSAGE_FIELDS)
        if text is None:
            text = next((value for value in data.values() if isinstance(value, str)), "")
        return text if len(text) <= MESSAGE_LENGTH else text[: MESSAGE_LENGTH - 1] + "…"

    @admin.display(description="event")
    def event(self, obj: Any) -> str:
        """The whole event, pretty-printed."""
        return format_html("<pre>{}</pre>", json.dumps(obj.data, indent=2, ensure_ascii=False, sort_keys=True))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# A project that only borrows IngestedEventAdmin need not install the app
# (whose models module could not be imported then).
if apps.is_installed("ingest_mw.contrib.django"):
    from .models import IngestedEvent

    admin.site.register(IngestedEvent, IngestedEventAdmin)
