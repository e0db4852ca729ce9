from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.views.decorators.http import require_GET

from storeloop.core.tasks.health import queue_health


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness and readiness without auth: the database answers and the queue is readable."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        queue = queue_health()
    except Exception:
        return JsonResponse({"status": "error", "database": "unavailable"}, status=503)
    return JsonResponse(
        {
            "status": "ok",
            "database": connection.vendor,
            "queue": {"ready": queue.ready, "running": queue.running, "failed": queue.failed},
        }
    )


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect("/admin/")
