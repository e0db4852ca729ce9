"""Results, the 24-hour window rule, template components and the webhook parser.

Webhook shape (``object: whatsapp_business_account``): ``entry[].changes[]`` with ``field:
"messages"`` carry a ``value`` holding ``metadata`` (our phone number), and ``statuses[]`` (sent,
delivered, read, failed; ``played`` for voice), ``messages[]`` + ``contacts[]`` (inbound), or
``errors[]`` (system-level). Other fields (``message_template_status_update``, ``account_update``,
...) are counted and skipped. Meta batches several entries/changes in one POST, retries deliveries
that were not answered 200 and does not order them: callers dedupe on ``(wamid, status)`` and never
move a message's status backwards (a late ``sent`` after ``read``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from .errors import WhatsAppError, error_from_code

WINDOW = timedelta(hours=24)
MAX_TEXT = 4096  # characters in a text message body

Keyword = Literal["stop", "start", "help"]


@dataclass(frozen=True, slots=True)
class SentMessage:
    """What the send call answered: ``wamid`` (the id status webhooks refer to) and ``to`` (the wa_id).

    ``message_status`` is only present for templates: ``accepted``, ``held_for_quality_assessment``
    or ``paused``.
    """

    wamid: str
    to: str
    input: str = ""
    message_status: str | None = None


@dataclass(frozen=True, slots=True)
class PhoneNumberInfo:
    id: str
    display_phone_number: str | None
    verified_name: str | None
    quality_rating: str | None  # GREEN / YELLOW / RED / UNKNOWN
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def window_open(last_inbound_at: datetime | None, now: datetime) -> bool:
    """True while free-form messages may go: less than 24 h since the contact's last inbound message.

    Meta counts from the *contact's* last message (our own messages do not extend it) and refuses
    free text at exactly 24 h, so the bound is strict. Both datetimes must be timezone-aware. A
    last-inbound time slightly in the future (clock skew) counts as open.
    """
    if last_inbound_at is None:
        return False
    if last_inbound_at.tzinfo is None or now.tzinfo is None:
        raise ValueError("window_open needs timezone-aware datetimes")
    return now - last_inbound_at < WINDOW


def window_closes_at(last_inbound_at: datetime) -> datetime:
    return last_inbound_at + WINDOW


def body_components(parameters: Sequence[str]) -> list[dict[str, Any]]:
    """Positional body parameters ``{{1}}, {{2}}, ...`` as the ``components`` Meta expects."""
    if not parameters:
        return []
    return [{"type": "body", "parameters": [{"type": "text", "text": str(p)} for p in parameters]}]


def template_parameter_count(components: Sequence[Mapping[str, Any]] | None) -> int:
    """All parameters across header, body and button components (what Meta checks for 132000)."""
    total = 0
    for component in components or ():
        params = component.get("parameters") if isinstance(component, Mapping) else None
        if isinstance(params, list):
            total += len(params)
    return total


# --- keywords ----------------------------------------------------------------------------------------

_STOP = frozenset(
    {"stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "optout", "opt out", "opt-out"}
    | {"stop promotions"}  # the text of Meta's marketing opt-out quick-reply button
)
# "yes" is deliberately not a START word: customers answer "yes" to order confirmations.
_START = frozenset({"start", "unstop", "subscribe", "resume", "opt in", "opt-in", "optin"})
_HELP = frozenset({"help", "info"})
_TRIM = re.compile(r"^[\s\"'.!?¡¿]+|[\s\"'.!?¡¿]+$")


def classify_keyword(text: str | None) -> Keyword | None:
    """``"stop"``/``"start"``/``"help"`` when the *whole* message is such a keyword, else None.

    Case-insensitive, surrounding spaces, quotes and ``.!?`` ignored; "please stop texting me" is not
    a keyword (a person should read it).
    """
    if not text:
        return None
    word = " ".join(_TRIM.sub("", text).casefold().split())
    if word in _STOP:
        return "stop"
    if word in _START:
        return "start"
    if word in _HELP:
        return "help"
    return None


# --- webhooks ----------------------------------------------------------------------------------------


class WebhookPayloadError(ValueError):
    """The payload does not have the documented shape; ``path`` names the offending place."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class WebhookError:
    code: int | None
    title: str | None
    message: str | None
    details: str | None

    def to_exception(self) -> WhatsAppError:
        return error_from_code(self.code, self.message or self.title or "WhatsApp error", details=self.details)


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    wamid: str
    status: str  # sent | delivered | read | failed | played (others passed through)
    recipient: str
    timestamp: datetime
    errors: tuple[WebhookError, ...] = ()
    callback_data: str | None = None  # our biz_opaque_callback_data, echoed back
    conversation_id: str | None = None
    pricing_category: str | None = None  # service / utility / marketing / authentication
    phone_number_id: str | None = None

    def error(self) -> WhatsAppError | None:
        """The first error as the same exception class the send call would raise (e.g. WindowClosed)."""
        return self.errors[0].to_exception() if self.errors else None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    from_: str
    wamid: str
    timestamp: datetime
    type: str  # text, button, interactive, image, ..., unsupported
    text: str | None = None
    button_payload: str | None = None  # template quick-reply button
    button_text: str | None = None
    reply_id: str | None = None  # interactive button_reply / list_reply
    reply_title: str | None = None
    context_wamid: str | None = None  # the message this one answers
    profile_name: str | None = None
    phone_number_id: str | None = None
    errors: tuple[WebhookError, ...] = ()

    @property
    def keyword(self) -> Keyword | None:
        for candidate in (self.text, self.button_payload, self.button_text, self.reply_id, self.reply_title):
            if candidate:
                found = classify_keyword(candidate)
                if found:
                    return found
        return None


@dataclass(frozen=True, slots=True)
class WebhookBatch:
    statuses: list[StatusUpdate] = field(default_factory=list)
    messages: list[InboundMessage] = field(default_factory=list)
    errors: list[WebhookError] = field(default_factory=list)  # value.errors (system-level)
    ignored_fields: list[str] = field(default_factory=list)


def _obj(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise WebhookPayloadError(path, "expected an object")
    return value


def _list(value: Any, path: str, *, optional: bool = True) -> list[Any]:
    if value is None and optional:
        return []
    if not isinstance(value, list):
        raise WebhookPayloadError(path, "expected a list")
    return value


def _str(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # ids as numbers appear in older captures
    if not isinstance(value, str) or not value:
        raise WebhookPayloadError(f"{path}.{key}", "expected a non-empty string")
    return value


def _opt(obj: Mapping[str, Any] | None, key: str) -> str | None:
    if obj is None:
        return None
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def _timestamp(obj: Mapping[str, Any], path: str) -> datetime:
    raw = obj.get("timestamp")  # unix seconds, sent as a string
    try:
        seconds = int(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) else None
    except ValueError:
        seconds = None
    if seconds is None or seconds < 0:
        raise WebhookPayloadError(f"{path}.timestamp", "expected unix seconds")
    return datetime.fromtimestamp(seconds, tz=UTC)


def _errors(value: Any, path: str) -> tuple[WebhookError, ...]:
    out = []
    for i, item in enumerate(_list(value, path)):
        err = _obj(item, f"{path}[{i}]")
        code = err.get("code")
        data = err.get("error_data")
        out.append(
            WebhookError(
                code=code if isinstance(code, int) and not isinstance(code, bool) else None,
                title=_opt(err, "title"),
                message=_opt(err, "message"),
                details=_opt(data, "details") if isinstance(data, Mapping) else None,
            )
        )
    return tuple(out)


def _status(item: Any, path: str, phone_number_id: str | None) -> StatusUpdate:
    st = _obj(item, path)
    conversation = st.get("conversation")
    pricing = st.get("pricing")
    return StatusUpdate(
        wamid=_str(st, "id", path),
        status=_str(st, "status", path),
        recipient=_str(st, "recipient_id", path),
        timestamp=_timestamp(st, path),
        errors=_errors(st.get("errors"), f"{path}.errors"),
        callback_data=_opt(st, "biz_opaque_callback_data"),
        conversation_id=_opt(conversation, "id") if isinstance(conversation, Mapping) else None,
        pricing_category=_opt(pricing, "category") if isinstance(pricing, Mapping) else None,
        phone_number_id=phone_number_id,
    )


def _message(item: Any, path: str, names: Mapping[str, str], phone_number_id: str | None) -> InboundMessage:
    msg = _obj(item, path)
    kind = _str(msg, "type", path)
    sender = _str(msg, "from", path)
    fields: dict[str, Any] = {}
    if kind == "text":
        fields["text"] = _str(_obj(msg.get("text"), f"{path}.text"), "body", f"{path}.text")
    elif kind == "button":  # quick reply on a template
        button = _obj(msg.get("button"), f"{path}.button")
        fields["button_payload"] = _opt(button, "payload")
        fields["button_text"] = _opt(button, "text")
    elif kind == "interactive":
        interactive = _obj(msg.get("interactive"), f"{path}.interactive")
        reply_type = _opt(interactive, "type") or ""
        reply = interactive.get(reply_type)
        if isinstance(reply, Mapping):
            fields["reply_id"] = _opt(reply, "id")
            fields["reply_title"] = _opt(reply, "title")
    context = msg.get("context")
    return InboundMessage(
        from_=sender,
        wamid=_str(msg, "id", path),
        timestamp=_timestamp(msg, path),
        type=kind,
        context_wamid=_opt(context, "id") if isinstance(context, Mapping) else None,
        profile_name=names.get(sender),
        phone_number_id=phone_number_id,
        errors=_errors(msg.get("errors"), f"{path}.errors"),
        **fields,
    )


def parse_webhook(payload: Any) -> WebhookBatch:
    """Parse one (already signature-checked) webhook body; raise ``WebhookPayloadError`` if malformed."""
    root = _obj(payload, "$")
    if root.get("object") != "whatsapp_business_account":
        raise WebhookPayloadError("$.object", f"expected 'whatsapp_business_account', got {root.get('object')!r}")
    batch = WebhookBatch()
    for e, entry_raw in enumerate(_list(root.get("entry"), "$.entry", optional=False)):
        entry = _obj(entry_raw, f"$.entry[{e}]")
        for c, change_raw in enumerate(_list(entry.get("changes"), f"$.entry[{e}].changes")):
            path = f"$.entry[{e}].changes[{c}]"
            change = _obj(change_raw, path)
            name = change.get("field")
            if name != "messages":
                batch.ignored_fields.append(str(name))
                continue
            value = _obj(change.get("value"), f"{path}.value")
            path += ".value"
            metadata = value.get("metadata")
            phone_id = _opt(metadata, "phone_number_id") if isinstance(metadata, Mapping) else None
            names: dict[str, str] = {}
            for i, contact in enumerate(_list(value.get("contacts"), f"{path}.contacts")):
                contact = _obj(contact, f"{path}.contacts[{i}]")
                profile = contact.get("profile")
                wa_id, name_ = _opt(contact, "wa_id"), _opt(profile, "name") if isinstance(profile, Mapping) else None
                if wa_id and name_:
                    names[wa_id] = name_
            for i, item in enumerate(_list(value.get("statuses"), f"{path}.statuses")):
                batch.statuses.append(_status(item, f"{path}.statuses[{i}]", phone_id))
            for i, item in enumerate(_list(value.get("messages"), f"{path}.messages")):
                batch.messages.append(_message(item, f"{path}.messages[{i}]", names, phone_id))
            batch.errors.extend(_errors(value.get("errors"), f"{path}.errors"))
    return batch
