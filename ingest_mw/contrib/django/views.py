"""The view behind ``include("ingest_mw.contrib.django.urls")``.

One sync view, correct under both of Django's handlers. Under WSGI it reads
the body as it arrives. Under ASGI, Django has already spooled the whole
body before any view runs, so an async view would stream nothing; Django
runs a sync view in the request's own thread, where the ORM hook and the
sync rate-limit storage work as they do under WSGI. (An async view under
WSGI would run each request in a new event loop, which an async Redis client
bound to one loop cannot survive.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import django
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ...http import not_found
from ...wsgi import InputReader, request_from_environ, respond
from . import conf

if TYPE_CHECKING or django.VERSION >= (5, 1):  # clients authenticate with their token, not a login session
    from django.contrib.auth.decorators import login_not_required
else:  # pragma: no cover - older Django has no LoginRequiredMiddleware

    def login_not_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        return view


__all__ = ["ingest"]


@csrf_exempt
@login_not_required
def ingest(request: HttpRequest, path: str) -> HttpResponse:
    """Serve ``path``, the part of the URL below the ``include()`` prefix."""
    endpoint = conf.endpoint()
    mount = request.path[: len(request.path) - len(path)]
    if path and not path.startswith("/") and not mount.endswith("/"):
        # "/ingestion" under path("ingest", ...): not below the mount at all.
        raise Http404("no ingest API at this path")
    mount_path = path if path.startswith("/") else "/" + path
    found = endpoint.routes.find(mount_path)
    if found is None:
        response = not_found(endpoint.routes, mount.rstrip("/"), mount_path)
        return HttpResponse(response.body, status=response.status, headers=response.headers)
    api, route = found
    meta = request.META  # a WSGI-style environ under both handlers
    body = InputReader(request.read, meta.get("CONTENT_LENGTH"))
    response = respond(api, request_from_environ(meta, mount_path), route, body, endpoint.store, endpoint.observer)
    reply = HttpResponse(response.body, status=response.status, headers=response.headers)
    if not any(name.lower() == "content-type" for name, _ in response.headers):
        del reply["Content-Type"]  # not Django's text/html default: Better Stack's 202 has none
    return reply
