"""Twilio message shapes: sent messages (REST JSON), status callbacks and inbound messages (form webhooks).

REST JSON quirks: snake_case keys, numbers as strings (``"num_segments": "1"``, ``"price":
"-0.00750"``, negative = charged), dates as RFC 2822 strings (``"Thu, 24 Aug 2023 05:01:45 +0000"``).
Webhooks are form-encoded with CamelCase names; the parameter set grows over time, so unknown
parameters are ignored. Validate the signature (``signature.validate_signature``) before parsing.

Keywords: Twilio itself handles the standard English keywords on long codes and toll-free numbers
(it blocks the sender→recipient pair on an opt-out keyword and answers 21610 afterwards), and still
forwards the message to the inbound webhook. ``classify_keyword`` mirrors Twilio's default lists so
Storeloop records consent changes too. Only a whole message that is exactly one keyword counts
("STOP please" does not), case-insensitively, surrounding whitespace ignored.
"""

from __future__ import annotations

import email.utils
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .segments import SegmentInfo

Keyword = Literal["stop", "start", "help"]

# Twilio's default keywords (docs "Advanced Opt-Out" and help article 223134027). REVOKE and OPTOUT
# were added to the opt-out list in 2025; older lists show only the first six.
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})

FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "read", "canceled", "received"})
FAILED_STATUSES = frozenset({"undelivered", "failed", "canceled"})
OPTED_OUT_CODE = 21610
_VERDICTS: dict[str, Keyword] = {"STOP": "stop", "START": "start", "HELP": "help"}


def classify_keyword(body: str | None) -> Keyword | None:
    """``"stop"``, ``"start"`` or ``"help"`` when ``body`` is exactly one of Twilio's default keywords."""
    if not body:
        return None
    text = body.strip()
    if not text.isascii():  # "ſtop".upper() == "STOP": only plain ASCII words are keywords
        return None
    word = text.upper()
    if word in OPT_OUT_KEYWORDS:
        return "stop"
    if word in OPT_IN_KEYWORDS:
        return "start"
    if word in HELP_KEYWORDS:
        return "help"
    return None


def parse_twilio_date(value: Any) -> datetime | None:
    """An RFC 2822 date from Twilio JSON (``"Thu, 24 Aug 2023 05:01:45 +0000"``) as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    return _parse_date(value)


@functools.lru_cache(maxsize=256)
def _parse_date(value: str) -> datetime | None:
    """Cached: the messages of a batch were created within the same few seconds (and datetimes are
    immutable, so sharing one is safe)."""
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A Message resource as Twilio returned it.

    ``segments`` is Twilio's ``num_segments`` (what is billed; ``0`` while a Messaging Service has
    not picked a sender yet). ``estimate`` is our own count from the body we sent, None when read
    back from Twilio. ``price`` is a decimal string, negative when charged, None until known.
    """

    sid: str
    status: str
    to: str
    from_: str | None
    body: str | None
    segments: int
    price: str | None = None
    price_unit: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    messaging_service_sid: str | None = None
    direction: str | None = None
    date_created: datetime | None = None
    date_sent: datetime | None = None
    estimate: SegmentInfo | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, estimate: SegmentInfo | None = None) -> SentMessage:
        sid = data.get("sid")
        if not isinstance(sid, str) or not sid:
            raise ValueError("Twilio message JSON without a sid")
        return cls(
            sid=sid,
            status=str(data.get("status") or ""),
            to=str(data.get("to") or ""),
            from_=_str(data.get("from")),
            body=data.get("body") if isinstance(data.get("body"), str) else None,
            segments=_int(data.get("num_segments")) or 0,
            price=_str(data.get("price")),
            price_unit=_str(data.get("price_unit")),
            error_code=_int(data.get("error_code")),
            error_message=_str(data.get("error_message")),
            messaging_service_sid=_str(data.get("messaging_service_sid")),
            direction=_str(data.get("direction")),
            date_created=parse_twilio_date(data.get("date_created")),
            date_sent=parse_twilio_date(data.get("date_sent")),
            estimate=estimate,
        )

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """The Account resource: ``status`` is ``active``, ``suspended`` or ``closed``; ``type`` ``Trial`` or ``Full``."""

    sid: str
    friendly_name: str
    status: str
    type: str

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def trial(self) -> bool:
        return self.type.lower() == "trial"


def _first(params: Mapping[str, Any], name: str) -> str | None:
    """A form parameter's (first) value from a dict of str, a dict of lists or a QueryDict."""
    getlist = getattr(params, "getlist", None)
    if callable(getlist):
        values = getlist(name)
        return str(values[0]) if values else None
    value = params.get(name)
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and value:
        return str(value[0])
    return None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One status callback. ``error_code`` accompanies ``failed``/``undelivered`` (30xxx delivery codes;
    21610 when a Messaging Service accepted a message to an opted-out number). Callbacks can arrive out
    of order and more than once: apply a status only if it moves the message forward."""

    sid: str
    status: str
    error_code: int | None
    to: str | None
    from_: str | None
    account_sid: str | None = None
    messaging_service_sid: str | None = None
    raw_dlr_done_date: str | None = None  # YYMMDDhhmm, carrier's delivery time (delivered/undelivered SMS)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def opted_out(self) -> bool:
        """The recipient had opted out: record a withdrawal of consent, as for a synchronous 21610."""
        return self.error_code == OPTED_OUT_CODE


def parse_status_callback(params: Mapping[str, Any]) -> StatusUpdate:
    """Parse a (signature-checked) status callback; ``ValueError`` when it names no message or status."""
    sid = _first(params, "MessageSid") or _first(params, "SmsSid")
    status = _first(params, "MessageStatus") or _first(params, "SmsStatus")
    if not sid or not status:
        raise ValueError("not a Twilio status callback: MessageSid and MessageStatus are required")
    return StatusUpdate(
        sid=sid,
        status=status.lower(),
        error_code=_int(_first(params, "ErrorCode")),
        to=_first(params, "To"),
        from_=_first(params, "From"),
        account_sid=_first(params, "AccountSid"),
        messaging_service_sid=_first(params, "MessagingServiceSid") or None,
        raw_dlr_done_date=_first(params, "RawDlrDoneDate"),
    )


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """An incoming SMS (the number's or Messaging Service's inbound webhook).

    ``opt_out_type`` is Twilio's own verdict (``STOP``/``START``/``HELP``) when Advanced Opt-Out is on;
    ``keyword`` prefers it and falls back to :func:`classify_keyword` on the body.
    """

    sid: str
    from_: str
    to: str
    body: str
    account_sid: str | None = None
    messaging_service_sid: str | None = None
    num_media: int = 0
    num_segments: int | None = None
    opt_out_type: str | None = None

    @property
    def keyword(self) -> Keyword | None:
        verdict = _VERDICTS.get((self.opt_out_type or "").strip().upper())
        return verdict if verdict is not None else classify_keyword(self.body)


def parse_inbound(params: Mapping[str, Any]) -> InboundMessage:
    """Parse a (signature-checked) inbound message webhook; ``ValueError`` without sid or sender."""
    sid = _first(params, "MessageSid") or _first(params, "SmsMessageSid") or _first(params, "SmsSid")
    from_ = _first(params, "From")
    if not sid or not from_:
        raise ValueError("not a Twilio inbound message: MessageSid and From are required")
    return InboundMessage(
        sid=sid,
        from_=from_,
        to=_first(params, "To") or "",
        body=_first(params, "Body") or "",
        account_sid=_first(params, "AccountSid"),
        messaging_service_sid=_first(params, "MessagingServiceSid") or None,
        num_media=_int(_first(params, "NumMedia")) or 0,
        num_segments=_int(_first(params, "NumSegments")),
        opt_out_type=_first(params, "OptOutType"),
    )
