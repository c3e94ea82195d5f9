"""Better Stack at /ingest (and /ingest/), Baselime at /ingest/v1/<dataset>, the admin, and /events/."""

from django.contrib import admin
from django.urls import include, path
from eventlog.views import latest_events

urlpatterns = [
    path("admin/", admin.site.urls),
    path("ingest", include("ingest_mw.contrib.django.urls")),
    path("events/", latest_events, name="latest-events"),
]
