"""Inbox handlers of messaging webhooks (named in ``inbox.handlers``), run by the worker.

Each runs inside the inbox's processing transaction and is safe to run again (a replay, or the
same event in a differently batched delivery): delivery reports only move messages forward
(``statuses``), the WhatsApp window only forward (``window``), a suppression is added once, and
consent is withdrawn only where it is not withdrawn already. The return value is the delivery's
``outcome``: counts, never personal data.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson
from django.utils import timezone

from storeloop.consent.models import Channel, ConsentState, ConsentStatus, Purpose, Suppression
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.contacts.normalize import normalize_email, normalize_phone
from storeloop.core.errors import ValidationError
from storeloop.integrations.smtp.bounces import BounceEvent, parse_email_events
from storeloop.integrations.twilio.client import key_from_callback_url
from storeloop.integrations.twilio.errors import MORE_INFO
from storeloop.integrations.twilio.models import OPTED_OUT_CODE, StatusUpdate, parse_inbound, parse_status_callback
from storeloop.integrations.whatsapp.errors import WhatsAppRecipientOptedOut, scrub
from storeloop.integrations.whatsapp.models import StatusUpdate as WhatsAppStatus
from storeloop.integrations.whatsapp.models import parse_webhook
from storeloop.messaging.channels.email import MESSAGE_ID_PREFIX
from storeloop.messaging.inbound.services import twilio_request
from storeloop.messaging.inbound.statuses import DeliveryReport, Report, apply_report, find_message
from storeloop.messaging.inbound.window import record_inbound
from storeloop.messaging.models import Message, MessagingConnection
from storeloop.stores.models import Store

logger = logging.getLogger("storeloop.webhooks")

# Twilio's statuses as our reports. queued/accepted/scheduled/sending mean Twilio holds the message:
# for us that is "sent" (the provider took it), which also settles a message left "unknown".
_TWILIO: dict[str, Report] = {
    "accepted": "sent", "scheduled": "sent", "queued": "sent", "sending": "sent", "sent": "sent",
    "delivered": "delivered", "read": "read", "undelivered": "failed", "failed": "failed", "canceled": "failed",
}  # fmt: skip
_WHATSAPP: dict[str, Report] = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}
_OUR_MESSAGE_ID = re.compile(rf"<?{re.escape(MESSAGE_ID_PREFIX)}([0-9a-fA-F-]{{36}})@[^>\s]+>?")


def _summary(counts: Counter[str]) -> str:
    return ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()) if n) or "nothing to do"


def _live(contact: Contact) -> Contact:
    hops = 0
    while contact.merged_into_id is not None and hops < 20:
        contact = Contact.objects.get(pk=contact.merged_into_id)
        hops += 1
    return contact


def _withdraw(contact: Contact, channel: str, purposes: Iterable[str], *, source: str, evidence: dict[str, Any]) -> int:
    """Withdraw consent for ``purposes`` unless already withdrawn (a replay adds nothing to the ledger)."""
    contact = _live(contact)
    withdrawn = set(
        ConsentState.objects.filter(contact=contact, channel=channel, status=ConsentStatus.WITHDRAWN).values_list(
            "purpose", flat=True
        )
    )
    gate = MessagingConsentManager()
    done = 0
    for purpose in purposes:
        if purpose not in withdrawn:
            gate.withdraw_consent(contact, channel, purpose, source=source, evidence=evidence)
            done += 1
    return done


# --- Twilio ------------------------------------------------------------------------------------


def _twilio_time(update: StatusUpdate) -> dt.datetime:
    """The carrier's delivery time (``RawDlrDoneDate``, YYMMDDhhmm UTC) when given, else now."""
    raw = update.raw_dlr_done_date or ""
    try:
        return dt.datetime.strptime(raw, "%y%m%d%H%M").replace(tzinfo=dt.UTC)
    except ValueError:
        return timezone.now()


def handle_twilio_status(store: Store, body: bytes) -> str:
    """A status callback: move the message forward; 21610 (the number sent STOP) withdraws SMS consent."""
    url, params = twilio_request(body)
    update = parse_status_callback(params)
    report_status = _TWILIO.get(update.status)
    if report_status is None:
        return f"status {update.status} ignored"
    error = ""
    if report_status == "failed":
        code = update.error_code
        error = f"{update.status}: Twilio error {code} ({MORE_INFO.format(code=code)})" if code else update.status
    message = find_message(store.pk, Channel.SMS, key=key_from_callback_url(url), provider_message_id=update.sid)
    if message is None:
        return "no such message"
    report = DeliveryReport(report_status, _twilio_time(update), error=error, provider_message_id=update.sid)
    outcome = apply_report(message, report)
    if update.error_code == OPTED_OUT_CODE:  # SMS STOP blocks everything at the carrier: all purposes
        evidence = {"provider": "twilio", "error_code": OPTED_OUT_CODE, "message_sid": update.sid}
        withdrawn = _withdraw(
            message.contact, Channel.SMS, Purpose.values, source="provider_opt_out", evidence=evidence
        )
        outcome += f"; consent withdrawn: {withdrawn}"
    return outcome


def handle_twilio_inbound(store: Store, body: bytes) -> str:
    """An inbound SMS: STOP/START/HELP and Twilio's other keywords go to the consent manager."""
    _, params = twilio_request(body)
    inbound = parse_inbound(params)
    keyword = inbound.keyword
    if keyword is None:
        return "message without keyword"
    events = MessagingConsentManager().handle_keyword(
        store.pk, Channel.SMS, inbound.from_, keyword,
        evidence={"provider": "twilio", "message_sid": inbound.sid, "keyword": keyword},
    )  # fmt: skip
    return f"keyword {keyword}: {len(events)} consent event(s)"


# --- WhatsApp ----------------------------------------------------------------------------------


def _whatsapp_report(status: WhatsAppStatus) -> DeliveryReport | None:
    report_status = _WHATSAPP.get(status.status)
    if report_status is None:
        return None
    error = ""
    if status.errors:
        first = status.errors[0]
        error = scrub(f"WhatsApp error {first.code}: {first.title or first.message or 'failed'}")
    return DeliveryReport(report_status, status.timestamp, error=error or status.status,
                          provider_message_id=status.wamid)  # fmt: skip


def handle_whatsapp_messages(store: Store, body: bytes) -> str:
    """Statuses move messages forward; inbound messages open the 24-hour window and carry STOP/START."""
    batch = parse_webhook(orjson.loads(body))
    connection = MessagingConnection.objects.filter(store=store, channel=Channel.WHATSAPP).first()
    our_number = str((connection.settings or {}).get("phone_number_id") or "") if connection else ""
    counts: Counter[str] = Counter()

    def ours(phone_number_id: str | None) -> bool:
        # One Meta app can serve several numbers; another store's number is not this store's business.
        return not (our_number and phone_number_id and phone_number_id != our_number)

    for status in batch.statuses:
        report = _whatsapp_report(status)
        if not ours(status.phone_number_id) or report is None:
            counts["skipped"] += 1
            continue
        message = find_message(store.pk, Channel.WHATSAPP, key=status.callback_data, provider_message_id=status.wamid)
        if message is None:
            counts["no such message"] += 1
            continue
        counts[apply_report(message, report)] += 1
        # 131050: the person stopped *marketing* from this business; receipts may still go.
        if isinstance(status.error(), WhatsAppRecipientOptedOut) and message.purpose == Purpose.MARKETING:
            counts["consent withdrawn"] += _withdraw(
                message.contact, Channel.WHATSAPP, [Purpose.MARKETING], source="provider_opt_out",
                evidence={"provider": "whatsapp", "error_code": 131050, "wamid": status.wamid},
            )  # fmt: skip
    gate = MessagingConsentManager()
    for inbound in batch.messages:
        address = normalize_phone("+" + inbound.from_.lstrip("+"))
        if not ours(inbound.phone_number_id) or address is None:
            counts["skipped"] += 1
            continue
        record_inbound(store.pk, address, inbound.timestamp)
        counts["inbound"] += 1
        keyword = inbound.keyword
        if keyword is not None:
            evidence = {"provider": "whatsapp", "wamid": inbound.wamid, "keyword": keyword}
            gate.handle_keyword(store.pk, Channel.WHATSAPP, address, keyword, evidence=evidence)
            counts[f"keyword {keyword}"] += 1
    for error in batch.errors:
        logger.warning("whatsapp: system error %s for store %s: %s", error.code, store.pk, scrub(error.title or ""))
        counts["system error"] += 1
    return _summary(counts)


# --- e-mail ------------------------------------------------------------------------------------


def _email_message(store_id: int, ref: str | None) -> Message | None:
    """The message an event names: by our Message-ID (``<sl-KEY@domain>``), else by the provider's id."""
    if not ref:
        return None
    ours = _OUR_MESSAGE_ID.fullmatch(ref)
    key = ours.group(1) if ours else None
    found = find_message(store_id, Channel.EMAIL, key=key, provider_message_id=ref)
    if found is None and not ref.startswith("<"):
        found = find_message(store_id, Channel.EMAIL, key=None, provider_message_id=f"<{ref}>")
    return found


def _apply_email_event(store: Store, event: BounceEvent, counts: Counter[str]) -> None:
    message = _email_message(store.pk, event.message_id)
    if event.type == "delivered":
        counts[
            apply_report(message, DeliveryReport("delivered", event.occurred_at)) if message else "no such message"
        ] += 1
        return
    if event.type == "bounce" and event.bounce_type == "soft":  # temporary: recorded, never suppressing
        if message is not None:
            Message.objects.filter(pk=message.pk).update(last_error=f"soft bounce: {event.reason}"[:500])
        counts["soft bounce"] += 1
        return
    reason = Suppression.Reason.COMPLAINT if event.type == "complaint" else Suppression.Reason.HARD_BOUNCE
    try:
        added = MessagingConsentManager().suppress(store.pk, Channel.EMAIL, event.email, reason, event.reason)
    except ValidationError:  # checked when received; a replay after a rule change must not loop
        counts["unusable address"] += 1
        return
    counts[f"{reason} ({'suppressed' if added else 'already suppressed'})"] += 1
    if message is not None and event.type == "bounce":
        apply_report(message, DeliveryReport("failed", event.occurred_at, error=f"hard bounce: {event.reason}"))
    if event.type == "complaint":  # a complaint is an unsubscribe from marketing
        address = normalize_email(event.email)
        for contact in Contact.objects.filter(store=store, email=address, merged_into__isnull=True):
            counts["consent withdrawn"] += _withdraw(
                contact, Channel.EMAIL, [Purpose.MARKETING], source="complaint",
                evidence={"provider": "email", "message_id": event.message_id or ""},
            )  # fmt: skip


def handle_email_events(store: Store, body: bytes) -> str:
    """Hard bounces and complaints suppress the address (complaints also withdraw marketing consent);
    soft bounces are recorded on the message; deliveries move it to delivered."""
    counts: Counter[str] = Counter()
    for event in parse_email_events(body):
        _apply_email_event(store, event, counts)
    return _summary(counts)
