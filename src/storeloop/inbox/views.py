"""``POST /webhooks/woocommerce/{store_id}``: verify on raw bytes, store, answer.

Nothing is processed here. The answer is 200 only after the delivery is committed, so
WooCommerce's "success" means we hold the data (it never redelivers on its own).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qs

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from storeloop.inbox.services import accept_delivery
from storeloop.integrations.woocommerce.signature import verify_signature
from storeloop.stores.models import Store

logger = logging.getLogger("storeloop.webhooks")
_SECRET_TTL = 10.0
_secrets: dict[int, tuple[str, float]] = {}


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"code": code, "message": message, "details": None}, status=status)


def _webhook_secret(store_id: int) -> str | None:
    """The store's webhook secret, cached briefly: decrypting it per delivery is wasted work."""
    cached = _secrets.get(store_id)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    row = Store.objects.filter(pk=store_id).only("id", "webhook_secret").first()
    if row is None:
        _secrets.pop(store_id, None)
        return None
    secret = str(row.webhook_secret)
    _secrets[store_id] = (secret, time.monotonic() + _SECRET_TTL)
    return secret


def _is_ping(request: HttpRequest, body: bytes) -> bool:
    # WooCommerce pings a new webhook with an unsigned form body ``webhook_id=N`` and no X-WC headers.
    if request.headers.get("X-WC-Webhook-Signature") or len(body) > 100:
        return False
    fields = parse_qs(body.decode("ascii", errors="replace"))
    return list(fields) == ["webhook_id"] and fields["webhook_id"][0].isdigit()


@csrf_exempt
@require_POST
def woocommerce_webhook(request: HttpRequest, store_id: int) -> HttpResponse:
    limit = settings.WEBHOOK_MAX_BYTES
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return _error(413, "payload_too_large", f"webhook bodies are limited to {limit} bytes")
    body = request.body
    if len(body) > limit:
        return _error(413, "payload_too_large", f"webhook bodies are limited to {limit} bytes")
    secret = _webhook_secret(store_id)
    if secret is None:
        return _error(404, "store_not_found", f"no store {store_id}; check the delivery URL")
    if _is_ping(request, body):
        return JsonResponse({"status": "pong"})
    if not verify_signature(secret, body, request.headers.get("X-WC-Webhook-Signature")):
        return _error(401, "invalid_signature", "X-WC-Webhook-Signature is missing or does not match")
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return _error(400, "invalid_json", "the signed body is not valid JSON")
    topic = request.headers.get("X-WC-Webhook-Topic", "").strip()
    if not topic:
        return _error(400, "missing_topic", "X-WC-Webhook-Topic header is required")
    result = accept_delivery(
        source="woocommerce",
        store_id=store_id,
        topic=topic,
        delivery_id=request.headers.get("X-WC-Webhook-Delivery-ID", "").strip(),
        webhook_id=request.headers.get("X-WC-Webhook-ID", "").strip(),
        body=body,
    )
    status = "duplicate" if result.duplicate else ("ignored" if result.ignored else "accepted")
    return JsonResponse({"status": status, "delivery": result.delivery_id})
