"""``GET /events/``: the newest events, each row whole, to watch them arrive with curl."""

from django.http import HttpRequest, JsonResponse

from .models import LogEvent

#: Every column of the table, in order.
FIELDS = ("id", "received_at", "dt", "api", "source", "dataset", "service", "namespace", "data")


def latest_events(request: HttpRequest) -> JsonResponse:
    events = LogEvent.objects.order_by("-id")[:20]
    rows = [{name: getattr(event, name) for name in FIELDS} for event in events]
    for row in rows:  # isoformat: Django's JSON encoder would cut the times to milliseconds
        row["received_at"] = row["received_at"].isoformat()
        row["dt"] = row["dt"].isoformat()
    return JsonResponse({"events": rows})
