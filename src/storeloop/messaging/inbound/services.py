"""Receiving provider webhooks: find the store's connection, check the signature, store the delivery.

Each ``receive_*`` runs before anything is written: unknown store or channel (404), a missing or
wrong signature (401, compared in constant time), a body that is not the documented shape (400).
Only then does ``accept_delivery`` store the raw delivery and enqueue its processing after commit,
so the answer is 200 only for a delivery we hold, a redelivery is a no-op, and any delivery can
be replayed. What a delivery *does* is in ``handlers``, run by the worker.

Delivery ids (unique per source and store, with the body's hash):

- Twilio status callback: ``MessageSid:MessageStatus`` (Twilio's retry of a callback repeats both);
  inbound SMS: ``MessageSid``.
- WhatsApp: ``wamid:status`` or ``wamid`` when the notification carries one item, else the body's
  hash (Meta batches, and retries a batch with the same bytes).
- E-mail events: the body's hash (the events carry no id of their own).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from storeloop.contacts.normalize import normalize_email
from storeloop.inbox.services import Accepted, accept_delivery
from storeloop.integrations.smtp.bounces import BounceParseError, parse_email_events
from storeloop.integrations.smtp.bounces import verify as verify_email_signature
from storeloop.integrations.twilio.models import parse_inbound, parse_status_callback
from storeloop.integrations.twilio.signature import parse_form
from storeloop.integrations.twilio.signature import validate_signature as verify_twilio_signature
from storeloop.integrations.whatsapp.models import WebhookPayloadError, parse_webhook
from storeloop.integrations.whatsapp.signature import verify_challenge
from storeloop.integrations.whatsapp.signature import verify_signature as verify_whatsapp_signature
from storeloop.messaging.channels.factory import credentials_of
from storeloop.messaging.inbound.errors import (
    ChannelNotConnected,
    InvalidPayload,
    InvalidSignature,
    StoreNotFound,
    VerificationFailed,
    WebhookNotConfigured,
)
from storeloop.messaging.models import MessagingConnection
from storeloop.stores.models import Store

logger = logging.getLogger("storeloop.webhooks")

TWILIO_STATUS = "message.status"
TWILIO_INBOUND = "message.inbound"
WHATSAPP_MESSAGES = "messages"
EMAIL_EVENTS = "events"


def _connection(store_id: int, channel: str) -> MessagingConnection:
    # Inactive connections still receive: reports of messages sent before the switch-off matter.
    connection = MessagingConnection.objects.filter(store_id=store_id, channel=channel).first()
    if connection is not None:
        return connection
    if not Store.objects.filter(pk=store_id).exists():
        raise StoreNotFound(f"no store {store_id}; check the webhook URL")
    raise ChannelNotConnected(
        f"store {store_id} has no {channel} connection; connect a provider before pointing its webhooks here",
        details=[{"store_id": store_id, "channel": channel}],
    )


def _secret(connection: MessagingConnection, name: str, what: str) -> str:
    secret = credentials_of(connection).get(name, "")
    if not secret:
        raise WebhookNotConfigured(
            f"the store's {connection.channel} connection has no {name}; connect it again with {what}",
            details=[{"field": name}],
        )
    return secret


def _accept(source: str, store_id: int, topic: str, delivery_id: str, body: bytes) -> Accepted:
    accepted = accept_delivery(
        source=source, store_id=store_id, topic=topic, delivery_id=delivery_id, webhook_id="", body=body
    )
    logger.info(
        "%s webhook for store %s: %s %s", source, store_id, topic,
        "duplicate" if accepted.duplicate else f"stored as delivery {accepted.delivery_id}",
    )  # fmt: skip
    return accepted


# --- Twilio ------------------------------------------------------------------------------------


def receive_twilio(*, store_id: int, topic: str, url: str, body: bytes, signature: str | None) -> Accepted:
    """A Twilio status callback (``message.status``) or inbound SMS (``message.inbound``).

    ``url`` is the full public URL Twilio called, query included (it is part of the signature, and
    a status callback's ``sl_key`` names our message). What is stored is that URL and the raw form.
    """
    connection = _connection(store_id, "sms")
    token = _secret(connection, "auth_token", "the account's auth token")
    try:
        form = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPayload("the body is not UTF-8 form data") from None
    params = parse_form(body)
    if not verify_twilio_signature(token, url, params, signature):
        raise InvalidSignature(
            "X-Twilio-Signature is missing or does not match; it must be signed with the connection's "
            "auth token over this exact URL (check STORELOOP_PUBLIC_URL)"
        )
    try:
        if topic == TWILIO_STATUS:
            update = parse_status_callback(params)
            delivery_id = f"{update.sid}:{update.status}"
        else:
            delivery_id = parse_inbound(params).sid
    except ValueError as exc:
        raise InvalidPayload(str(exc)) from None
    stored = orjson.dumps({"url": url, "form": form})
    return _accept("twilio", store_id, topic, delivery_id, stored)


def twilio_request(body: bytes) -> tuple[str, dict[str, list[str]]]:
    """The URL and form parameters of a stored Twilio delivery."""
    data = orjson.loads(body)
    return str(data["url"]), parse_form(str(data["form"]).encode("utf-8"))


# --- WhatsApp ----------------------------------------------------------------------------------


def verify_whatsapp_subscription(*, store_id: int, params: Mapping[str, Any]) -> str:
    """Meta's GET handshake: the ``hub.challenge`` to echo when ``hub.verify_token`` is ours."""
    connection = _connection(store_id, "whatsapp")
    verify_token = credentials_of(connection).get("verify_token", "")
    challenge = verify_challenge(params, verify_token)
    if challenge is None:
        raise VerificationFailed(
            "hub.mode must be 'subscribe' and hub.verify_token must equal the verify token of the store's "
            "WhatsApp connection" + ("" if verify_token else " (it has none: connect it again with verify_token)")
        )
    return challenge


def receive_whatsapp(*, store_id: int, body: bytes, signature: str | None) -> Accepted:
    """A WhatsApp Cloud notification (statuses, inbound messages), signed with the Meta app secret."""
    connection = _connection(store_id, "whatsapp")
    secret = _secret(connection, "app_secret", "the Meta app's app_secret")
    if not verify_whatsapp_signature(secret, body, signature):
        raise InvalidSignature("X-Hub-Signature-256 is missing or does not match the app secret")
    try:
        batch = parse_webhook(orjson.loads(body))
    except orjson.JSONDecodeError:
        raise InvalidPayload("the signed body is not valid JSON") from None
    except WebhookPayloadError as exc:
        raise InvalidPayload(f"not a WhatsApp notification: {exc}", details=[{"field": exc.path}]) from None
    items = [f"{s.wamid}:{s.status}" for s in batch.statuses] + [m.wamid for m in batch.messages]
    # Only other fields (template reviews, account updates): stored as ignored under that field's name.
    topic = WHATSAPP_MESSAGES if items or batch.errors or not batch.ignored_fields else batch.ignored_fields[0]
    delivery_id = items[0] if len(items) == 1 else ""  # "" = the body's hash
    return _accept("whatsapp", store_id, topic, delivery_id, body)


# --- e-mail ------------------------------------------------------------------------------------


def receive_email_events(*, store_id: int, body: bytes, signature: str | None) -> Accepted:
    """Bounces, complaints and deliveries in the documented shape (docs/messaging-webhooks.md)."""
    connection = _connection(store_id, "email")
    secret = _secret(connection, "webhook_secret", "a webhook_secret")
    if not verify_email_signature(secret, body, signature):
        raise InvalidSignature("X-Storeloop-Signature is missing or does not match the connection's webhook secret")
    try:
        events = parse_email_events(body)
    except BounceParseError as exc:
        raise InvalidPayload(str(exc), details=[{"field": exc.field}] if exc.field else None) from None
    for index, event in enumerate(events):
        if normalize_email(event.email) is None:  # the suppression list keeps normalised addresses only
            field = f"events[{index}].recipient"
            raise InvalidPayload(f"{field}: is not an e-mail address", details=[{"field": field}])
    return _accept("email", store_id, EMAIL_EVENTS, "", body)
