"""The public URLs providers call, built like every other public link: from ``settings.PUBLIC_URL``."""

from __future__ import annotations

from django.conf import settings


def twilio_status_url(store_id: int) -> str:
    """Where Twilio posts status callbacks (set as each message's ``StatusCallback``)."""
    return f"{settings.PUBLIC_URL}/webhooks/twilio/{store_id}/status"


def twilio_inbound_url(store_id: int) -> str:
    """The "A message comes in" webhook of the sender number or Messaging Service."""
    return f"{settings.PUBLIC_URL}/webhooks/twilio/{store_id}/inbound"


def whatsapp_webhook_url(store_id: int) -> str:
    """The callback URL of the Meta app (verification GET and notification POSTs)."""
    return f"{settings.PUBLIC_URL}/webhooks/whatsapp/{store_id}"


def email_events_url(store_id: int) -> str:
    """Where a mail provider (or a glue script) posts bounces, complaints and deliveries."""
    return f"{settings.PUBLIC_URL}/webhooks/email/{store_id}"


def webhook_urls(store_id: int) -> dict[str, str]:
    """Every inbound URL of a store, for setup screens and the CLI."""
    return {
        "twilio_status": twilio_status_url(store_id),
        "twilio_inbound": twilio_inbound_url(store_id),
        "whatsapp": whatsapp_webhook_url(store_id),
        "email": email_events_url(store_id),
    }
