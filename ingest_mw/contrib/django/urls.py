"""``path("ingest/", include("ingest_mw.contrib.django.urls"))``.

Better Stack is served at the include's root and Baselime at
``v1/<dataset>`` below it. The one pattern hands the rest of the path to the
core's routing, so every path under the prefix gets the APIs' own answers
(Baselime's 400 for a malformed dataset, say); reverse it with
``reverse("ingest_mw:ingest", kwargs={"path": ""})``.
"""

from __future__ import annotations

from django.urls import re_path

from . import conf, views

app_name = "ingest_mw"

urlpatterns = [re_path(r"^(?P<path>.*)\Z", views.ingest, name="ingest")]

# Check INGEST_MW when the URLconf loads (manage.py check, runserver), even in
# a project that does not install the app.
conf.endpoint()
