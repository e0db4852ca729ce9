"""Bounces, complaints and deliveries: the generic inbound webhook, DSN e-mails (RFC 3464) and ARF (RFC 5965).

Generic webhook (what Storeloop documents for any provider relay or glue script; the full
reference is docs/messaging-webhooks.md)::

    POST /webhooks/email/<store_id>
    Content-Type: application/json
    X-Storeloop-Signature: sha256=<hex HMAC-SHA256 of the raw body, key = the connection's webhook secret>

    {"events": [
      {"type": "bounce" | "complaint" | "delivered",
       "recipient": "customer@example.com",
       "bounce_type": "hard" | "soft",            # bounces only (required there); ignored otherwise
       "message_id": "<sl-…@mail.shop.example>",  # optional: our Message-ID header, or the provider's id
       "timestamp": "2025-05-01T12:00:00Z",       # ISO 8601 with a UTC offset, or unix seconds
       "reason": "550 5.1.1 user unknown"}        # optional, free text
    ]}

At most ``MAX_EVENTS`` events per request. Unknown keys are ignored (providers add their own).
Verify the signature over the exact received bytes *before* parsing. Replaying a signed body only
re-applies the same events, which are idempotent, so no timestamp header is needed.

A hard bounce or a complaint suppresses the address (``BounceEvent.suppress``); a soft bounce is
information (recorded, never suppressing); ``delivered`` moves the message to delivered.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import orjson

__all__ = [
    "MAX_EVENTS",
    "SIGNATURE_HEADER",
    "BounceEvent",
    "BounceParseError",
    "parse_arf",
    "parse_dsn",
    "parse_email_events",
    "sign",
    "verify",
]

SIGNATURE_HEADER = "X-Storeloop-Signature"
MAX_EVENTS = 1000
_MAX_REASON = 2000
_MAX_ID = 998  # a header line's limit (RFC 5322): no Message-ID or provider id is longer
_STATUS_RE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")

EventType = Literal["bounce", "complaint", "delivered"]
BounceType = Literal["hard", "soft"]


class BounceParseError(ValueError):
    """The input is not a valid event; ``field`` names the offending field (e.g. ``events[2].recipient``)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


@dataclass(frozen=True)
class BounceEvent:
    """One bounce, complaint or delivery report for one address. ``status`` is the RFC 3463 code when known."""

    type: EventType
    email: str
    bounce_type: BounceType | None
    reason: str
    message_id: str | None
    occurred_at: datetime
    status: str | None = None
    source: Literal["webhook", "dsn", "arf"] = "webhook"

    @property
    def suppress(self) -> bool:
        """Add the address to the suppression list: a complaint (treated as an unsubscribe) or a hard bounce."""
        return self.type == "complaint" or self.bounce_type == "hard"


# -- signatures --------------------------------------------------------------------------------


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Storeloop-Signature`` value for ``body``: ``sha256=<lowercase hex>``."""
    return "sha256=" + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Constant-time check of the signature header; False when missing, malformed or the secret is empty."""
    if not header or not secret:
        return False
    scheme, sep, digest = header.strip().partition("=")
    if not sep or scheme.strip().lower() != "sha256":
        return False
    expected = hmac.new(_key(secret), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), digest.strip().lower().encode("utf-8"))


# -- generic webhook ---------------------------------------------------------------------------


def _normalize_email(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BounceParseError("must be a non-empty string", field=field)
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    local, sep, domain = value.rpartition("@")
    # Deliberately loose (the address came from us), but the message never echoes it back.
    if not sep or not local or not domain or len(value) > 254 or any(c.isspace() or c in "<>," for c in value):
        raise BounceParseError("is not an e-mail address", field=field)
    return f"{local}@{domain.lower()}"


def _normalize_message_id(value: Any, field: str) -> str | None:
    """A Message-ID header value in its bracketed form (DSN and ARF reports)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > _MAX_ID or any(c.isspace() for c in value.strip()):
        raise BounceParseError("must be a Message-ID string such as <id@domain>", field=field)
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def _message_ref(value: Any, field: str) -> str | None:
    """A webhook's ``message_id``: our Message-ID (brackets optional) or the provider's own id, as given."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_ID:
        raise BounceParseError("must be our Message-ID (such as <id@domain>) or the provider's id", field=field)
    ref = value.strip()
    if any(c.isspace() or not c.isprintable() for c in ref):
        raise BounceParseError("must not contain spaces or control characters", field=field)
    return ref


def _parse_timestamp(value: Any, field: str) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < 1e11:  # unix seconds, not milliseconds
            raise BounceParseError("is not unix seconds", field=field)
        return datetime.fromtimestamp(value, tz=UTC)
    if not isinstance(value, str):
        raise BounceParseError("is required: an ISO 8601 timestamp with a UTC offset, or unix seconds", field=field)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BounceParseError("is not an ISO 8601 timestamp", field=field) from None
    if parsed.tzinfo is None:
        raise BounceParseError("must include a UTC offset (e.g. Z or +00:00)", field=field)
    return parsed.astimezone(UTC)


def _event_from_json(item: Any, index: int) -> BounceEvent:
    where = f"events[{index}]"
    if not isinstance(item, dict):
        raise BounceParseError("each event must be a JSON object", field=where)
    kind = item.get("type")
    if kind not in ("bounce", "complaint", "delivered"):
        raise BounceParseError("must be 'bounce', 'complaint' or 'delivered'", field=f"{where}.type")
    bounce_type: BounceType | None = None
    if kind == "bounce":
        raw_type = item.get("bounce_type")
        if raw_type not in ("hard", "soft"):
            raise BounceParseError("must be 'hard' or 'soft' for a bounce", field=f"{where}.bounce_type")
        bounce_type = raw_type
    reason = item.get("reason", "")
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise BounceParseError("must be a string", field=f"{where}.reason")
    return BounceEvent(
        type=kind,
        email=_normalize_email(item.get("recipient"), f"{where}.recipient"),
        bounce_type=bounce_type,
        reason=" ".join(reason.split())[:_MAX_REASON],
        message_id=_message_ref(item.get("message_id"), f"{where}.message_id"),
        occurred_at=_parse_timestamp(item.get("timestamp"), f"{where}.timestamp"),
    )


def parse_email_events(raw: bytes) -> list[BounceEvent]:
    """Events from a webhook body (``{"events": [...]}``). Raises ``BounceParseError`` naming the field."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BounceParseError(f"body is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "events" not in data:
        raise BounceParseError('body must be an object with an "events" list')
    events = data["events"]
    if not isinstance(events, list):
        raise BounceParseError("must be a list of event objects", field="events")
    if len(events) > MAX_EVENTS:
        raise BounceParseError(f"at most {MAX_EVENTS} events per request", field="events")
    return [_event_from_json(item, i) for i, item in enumerate(events)]


# -- e-mailed reports (DSN, ARF) ---------------------------------------------------------------


def _report_parts(raw_email: bytes, report_type: str) -> list[EmailMessage] | None:
    msg = BytesParser(policy=policy.default).parsebytes(raw_email)
    assert isinstance(msg, EmailMessage)
    param = msg.get_param("report-type", "")
    value = param if isinstance(param, str) else ""
    if msg.get_content_type() != "multipart/report" or value.lower() != report_type:
        return None
    return [part for part in msg.iter_parts() if isinstance(part, EmailMessage)]


def _original_headers(parts: list[EmailMessage]) -> Message | None:
    """Headers of the returned original (third part: ``text/rfc822-headers`` or ``message/rfc822``)."""
    for part in parts[1:]:
        ctype = part.get_content_type()
        if ctype == "text/rfc822-headers":
            return HeaderParser(policy=policy.default).parsestr(part.get_content())
        if ctype == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                inner = payload[0]
                return inner if isinstance(inner, Message) else None
    return None


def _header(block: Message, name: str) -> str | None:
    value = block.get(name)
    return " ".join(str(value).split()) if value is not None else None


def _typed_address(value: str | None) -> str | None:
    """``rfc822; bob@example.com`` -> ``bob@example.com``."""
    if not value:
        return None
    address_type, sep, address = value.partition(";")
    return (address if sep else address_type).strip() or None


def _report_time(*values: str | None) -> datetime:
    for value in values:
        if not value:
            continue
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    return datetime.now(UTC)


def _message_id_of(headers: Message | None) -> str | None:
    value = _header(headers, "Message-ID") if headers is not None else None
    return _normalize_message_id(value, "Message-ID") if value else None


def parse_dsn(raw_email: bytes) -> BounceEvent | None:
    """A bounce from an RFC 3464 delivery status notification, or None when the e-mail is not a DSN
    or reports no failure (``Action: delivered/relayed/expanded``).

    Storeloop sends one recipient per message, so the first failed (else delayed) recipient is
    reported. ``failed`` with a 5.x.x status is hard; ``delayed``, or ``failed`` with 4.x.x (the MTA
    gave up on a temporary failure), is soft. Raises ``BounceParseError`` when a DSN lacks a field.
    """
    parts = _report_parts(raw_email, "delivery-status")
    if parts is None:
        return None
    status_part = next((p for p in parts if p.get_content_type() == "message/delivery-status"), None)
    if status_part is None:
        raise BounceParseError("the report has no delivery-status part", field="message/delivery-status")
    # The parser splits message/delivery-status into field blocks: per-message, then one per recipient.
    payload = status_part.get_payload()
    blocks = [block for block in payload if isinstance(block, Message)] if isinstance(payload, list) else []
    if len(blocks) < 2:
        raise BounceParseError("the delivery-status part has no per-recipient fields", field="Final-Recipient")
    per_message, recipients = blocks[0], blocks[1:]
    chosen: Message | None = None
    for wanted in ("failed", "delayed"):
        chosen = next((b for b in recipients if (_header(b, "Action") or "").lower() == wanted), None)
        if chosen is not None:
            break
    if chosen is None:
        return None
    action = (_header(chosen, "Action") or "").lower()
    address = _typed_address(_header(chosen, "Final-Recipient")) or _typed_address(
        _header(chosen, "Original-Recipient")
    )
    email = _normalize_email(address, "Final-Recipient")
    status_value = (_header(chosen, "Status") or "").split(" ", 1)[0]
    status = status_value if _STATUS_RE.fullmatch(status_value) else None
    hard = action == "failed" and (status is None or status.startswith("5"))
    diagnostic = _typed_address(_header(chosen, "Diagnostic-Code"))  # "smtp; 550 ..." -> "550 ..."
    return BounceEvent(
        type="bounce",
        email=email,
        bounce_type="hard" if hard else "soft",
        reason=(diagnostic or status or action)[:_MAX_REASON],
        message_id=_message_id_of(_original_headers(parts)),
        occurred_at=_report_time(_header(chosen, "Last-Attempt-Date"), _header(per_message, "Arrival-Date")),
        status=status,
        source="dsn",
    )


def parse_arf(raw_email: bytes) -> BounceEvent | None:
    """A complaint from an RFC 5965 feedback report (ISP feedback loop), or None if not one.

    The recipient comes from ``Original-Rcpt-To``, else the original's ``To``; providers that
    redact both make this raise ``BounceParseError`` (map such reports by ``message_id`` instead).
    """
    parts = _report_parts(raw_email, "feedback-report")
    if parts is None:
        return None
    report_part = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    if report_part is None:
        raise BounceParseError("the report has no feedback-report part", field="message/feedback-report")
    payload = report_part.get_payload()
    fields = payload[0] if isinstance(payload, list) and payload else None
    if not isinstance(fields, Message):
        raise BounceParseError("the feedback-report part is empty", field="Feedback-Type")
    original = _original_headers(parts)
    address = _header(fields, "Original-Rcpt-To") or (_header(original, "To") if original is not None else None)
    if address and "<" in address:
        address = address[address.index("<") + 1 : address.rindex(">")] if ">" in address else address
    return BounceEvent(
        type="complaint",
        email=_normalize_email(address, "Original-Rcpt-To"),
        bounce_type=None,
        reason=(_header(fields, "Feedback-Type") or "abuse")[:_MAX_REASON],
        message_id=_message_id_of(original),
        occurred_at=_report_time(_header(fields, "Arrival-Date"), _header(fields, "Received-Date")),
        source="arf",
    )
