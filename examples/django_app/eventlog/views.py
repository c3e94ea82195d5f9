"""``GET /events/``: the newest events, to watch them arrive with curl."""

from django.http import HttpRequest, JsonResponse

from .models import LogEvent


def latest_events(request: HttpRequest) -> JsonResponse:
    events = LogEvent.objects.order_by("-id")[:20]
    fields = ("dt", "api", "source", "dataset", "service", "data")
    return JsonResponse({"events": [{name: getattr(event, name) for name in fields} for event in events]})
