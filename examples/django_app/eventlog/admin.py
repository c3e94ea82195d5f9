from django.contrib import admin

from ingest_mw.contrib.django.admin import IngestedEventAdmin

from .models import LogEvent

admin.site.register(LogEvent, IngestedEventAdmin)
