"""``path("ingest", include("ingest_mw.contrib.django.urls"))``.

Better Stack is served at the mount (``/ingest`` and ``/ingest/``: Django's
``APPEND_SLASH`` cannot redirect a POST, so both are served) and Baselime at
``v1/<dataset>`` below it. The patterns hand the rest of the path to the
core's routing, so every path under the prefix gets the APIs' own answers
(Baselime's 400 for a malformed dataset, say); reverse it with
``reverse("ingest_mw:ingest", kwargs={"path": ""})``. A mount written with
its slash, ``path("ingest/", ...)``, works too, without ``/ingest`` itself.
"""

from __future__ import annotations

from django.urls import re_path

from . import conf, views

app_name = "ingest_mw"

urlpatterns = [
    # The mount itself and anything below it ("", "/", "/v1/web")...
    re_path(r"^(?P<path>(?:/.*)?)\Z", views.ingest, name="ingest"),
    # ...and what follows a mount written with its slash ("v1/web" under "ingest/").
    re_path(r"^(?P<path>[^/].*)\Z", views.ingest),
]

# Check INGEST_MW when the URLconf loads (manage.py check, runserver), even in
# a project that does not install the app.
conf.endpoint()
