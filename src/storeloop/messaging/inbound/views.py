"""Webhook endpoints of the messaging providers: read the raw request, call one service, answer.

Nothing is processed here (see ``services`` and ``handlers``). Answers: Twilio gets 200 with empty
TwiML (``text/xml``: no auto-reply from us; Twilio's own opt-out replies still go), Meta and mail
providers a 200 JSON acknowledgement, Meta's verification GET the bare challenge as text. Refusals
are JSON ``{"code", "message", "details"}`` with 401/403/404/400/413 and store nothing.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from storeloop.core.errors import ApplicationError, PayloadTooLarge
from storeloop.inbox.services import Accepted
from storeloop.integrations.smtp.bounces import SIGNATURE_HEADER as EMAIL_SIGNATURE_HEADER
from storeloop.integrations.twilio.signature import SIGNATURE_HEADER as TWILIO_SIGNATURE_HEADER
from storeloop.integrations.whatsapp.signature import SIGNATURE_HEADER as WHATSAPP_SIGNATURE_HEADER
from storeloop.messaging.inbound.services import (
    TWILIO_INBOUND,
    TWILIO_STATUS,
    receive_email_events,
    receive_twilio,
    receive_whatsapp,
    verify_whatsapp_subscription,
)

EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


def _error(exc: ApplicationError) -> JsonResponse:
    return JsonResponse(exc.as_dict(), status=exc.status_code)


def _body(request: HttpRequest) -> bytes:
    limit = settings.WEBHOOK_MAX_BYTES
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    if declared > limit or len(body := request.body) > limit:
        raise PayloadTooLarge(f"webhook bodies are limited to {limit} bytes")
    return body


def _public_url(request: HttpRequest) -> str:
    """The URL the provider called, as it signed it: our public base URL and the path with its query."""
    return f"{settings.PUBLIC_URL}{request.get_full_path()}"


def _acknowledged(accepted: Accepted) -> JsonResponse:
    status = "duplicate" if accepted.duplicate else ("ignored" if accepted.ignored else "accepted")
    return JsonResponse({"status": status, "delivery": accepted.delivery_id})


def _twilio(request: HttpRequest, store_id: int, topic: str) -> HttpResponse:
    try:
        receive_twilio(store_id=store_id, topic=topic, url=_public_url(request), body=_body(request),
                       signature=request.headers.get(TWILIO_SIGNATURE_HEADER))  # fmt: skip
    except ApplicationError as exc:
        return _error(exc)
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest, store_id: int) -> HttpResponse:
    """``POST /webhooks/twilio/{store_id}/status``: a message's status callback."""
    return _twilio(request, store_id, TWILIO_STATUS)


@csrf_exempt
@require_POST
def twilio_inbound(request: HttpRequest, store_id: int) -> HttpResponse:
    """``POST /webhooks/twilio/{store_id}/inbound``: an SMS to the store's number."""
    return _twilio(request, store_id, TWILIO_INBOUND)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def whatsapp_webhook(request: HttpRequest, store_id: int) -> HttpResponse:
    """``GET`` (Meta's verification handshake) and ``POST`` (notifications) ``/webhooks/whatsapp/{store_id}``."""
    try:
        if request.method == "GET":
            challenge = verify_whatsapp_subscription(store_id=store_id, params=request.GET)
            return HttpResponse(challenge, content_type="text/plain")
        accepted = receive_whatsapp(store_id=store_id, body=_body(request),
                                    signature=request.headers.get(WHATSAPP_SIGNATURE_HEADER))  # fmt: skip
    except ApplicationError as exc:
        return _error(exc)
    return _acknowledged(accepted)


@csrf_exempt
@require_POST
def email_events(request: HttpRequest, store_id: int) -> HttpResponse:
    """``POST /webhooks/email/{store_id}``: bounces, complaints and deliveries (docs/messaging-webhooks.md)."""
    try:
        accepted = receive_email_events(store_id=store_id, body=_body(request),
                                        signature=request.headers.get(EMAIL_SIGNATURE_HEADER))  # fmt: skip
    except ApplicationError as exc:
        return _error(exc)
    return _acknowledged(accepted)
