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

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ...wsgi import InputReader, request_from_environ, respond
from . import conf

try:  # Django 5.1+: clients authenticate with their token, not a login session
    from django.contrib.auth.decorators import login_not_required
except ImportError:  # pragma: no cover - older Django has no LoginRequiredMiddleware

    def login_not_required(view):  # type: ignore[no-untyped-def]
        return view


__all__ = ["ingest"]


@csrf_exempt
@login_not_required
def ingest(request: HttpRequest, path: str) -> HttpResponse:
    """Serve ``path``, the part of the URL below the ``include()`` prefix."""
    endpoint = conf.endpoint()
    mount_path = "/" + path
    found = endpoint.routes.find(mount_path)
    if found is None:
        raise Http404("no ingest API at this path")
    api, route = found
    meta = request.META  # a WSGI-style environ under both handlers
    body = InputReader(request.read, meta.get("CONTENT_LENGTH"))
    response = respond(api, request_from_environ(meta, mount_path), route, body, endpoint.store, endpoint.observer)
    reply = HttpResponse(response.body, status=response.status, headers=response.headers)
    if not any(name.lower() == "content-type" for name, _ in response.headers):
        del reply["Content-Type"]  # not Django's text/html default: Better Stack's 202 has none
    return reply
