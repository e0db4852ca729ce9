"""Value types of the fake Twilio: REST errors, stored messages, request records, faults, number sets."""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

API = "/2010-04-01"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UTC_OFFSET = timedelta(0)


class ApiError(Exception):
    """A Twilio REST error: ``status``, ``code``, ``message``."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        out["more_info"] = f"https://www.twilio.com/docs/errors/{self.code}" if self.code else None
        return out


def rfc2822(moment: datetime) -> str:
    """``email.utils.format_datetime(moment)``: "Thu, 24 Aug 2023 05:01:45 +0000".

    UTC (every date the fake makes) is formatted directly: the stdlib's timetuple and strftime
    round trip, three times per message JSON, was a noticeable part of a create.
    """
    if moment.utcoffset() != _UTC_OFFSET:
        return email.utils.format_datetime(moment)
    return (
        f"{_DAYS[moment.weekday()]}, {moment.day:02d} {_MONTHS[moment.month - 1]} {moment.year:04d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} +0000"
    )


@dataclass
class FakeMessage:
    sid: str
    to: str
    from_: str | None
    body: str
    status: str
    messaging_service_sid: str | None
    status_callback: str | None
    num_segments: int
    date_created: datetime
    date_updated: datetime
    date_sent: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    price: str | None = None
    direction: str = "outbound-api"

    def as_json(self, account_sid: str) -> dict[str, Any]:
        uri = f"{API}/Accounts/{account_sid}/Messages/{self.sid}"
        return {
            "account_sid": account_sid,
            "api_version": "2010-04-01",
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent) if self.date_sent else None,
            "date_updated": rfc2822(self.date_updated),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(self.num_segments),
            "price": self.price,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
            "to": self.to,
            "uri": f"{uri}.json",
        }


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str  # without the query string
    status: int  # 0: the connection was dropped without an answer
    at: float  # time.monotonic()
    form: Mapping[str, str] | None = None  # POST fields (first value of each)


@dataclass
class Faults:
    """Fault switches, read on every request so they can be flipped at runtime (``POST /__fake__/faults``)."""

    latency_ms: int = 0  # before every API request is handled
    error_rate: float = 0.0  # fraction of API requests answered 500/502/503/504 (not processed)
    fail_next: int = 0  # the next N API requests fail with fail_next_status / fail_next_code (not processed)
    fail_next_status: int = 503
    fail_next_code: int = 0  # Twilio error code in the body; 0: the usual one for the status
    accept_then_drop: int = 0  # the next N message creates are stored, then the socket closes unanswered
    retry_after: int = 0  # seconds in Retry-After on 429s; 0: no header (Twilio documents none)
    callback_delay_ms: int = 5  # between a message's status steps

    def update(self, values: Mapping[str, Any]) -> None:
        """Validate every value first, then apply them all."""
        clean: dict[str, Any] = {}
        for name, value in values.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(f"unknown fault {name!r}")
            if isinstance(getattr(self, name), float):
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                    raise ValueError(f"fault {name!r} must be a number between 0 and 1")
                clean[name] = float(value)
            else:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"fault {name!r} must be a non-negative integer")
                clean[name] = value
        for name, value in clean.items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Numbers:
    """Per-recipient behaviour (E.164 strings)."""

    opted_out: set[str] = field(default_factory=set)  # 21610 on send (STOP replies add to it)
    landlines: set[str] = field(default_factory=set)  # 21614 on send
    invalid: set[str] = field(default_factory=set)  # 21211 on send, although well-formed
    fail_delivery: set[str] = field(default_factory=set)  # sent, then undelivered (30003)
    fail_sending: set[str] = field(default_factory=set)  # failed (30008), never sent
