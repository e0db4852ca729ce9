"""``ChannelInterface``: what the dispatcher needs from email, SMS and WhatsApp (design note 2C)."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from storeloop.messaging.templating import Rendered


class Outcome(enum.StrEnum):
    SENT = "sent"
    RETRY = "retry"  # transient: try again later
    FAILED = "failed"  # terminal: recorded once, never retried
    OPTED_OUT = "opted_out"  # terminal, and the provider says the person opted out: withdraw consent
    UNDELIVERABLE = "undeliverable"  # terminal, and the address is bad: suppress it
    UNKNOWN = "unknown"  # the provider may have accepted it; we cannot tell, so we never resend


@dataclass(frozen=True)
class Envelope:
    """One message as the channel sees it: who, what, and our idempotency key."""

    message_id: int
    idempotency_key: str
    to: str
    rendered: Rendered
    marketing: bool
    unsubscribe_url: str = ""
    preferences_url: str = ""  # marketing: the preference center (e-mail adds a footer if the body lacks it)
    window_open: bool = True  # WhatsApp: inside the 24-hour customer-service window
    wa_template_name: str = ""  # WhatsApp: approved template used outside the 24-hour window
    wa_language: str = ""
    locale: str = "en"  # the template's: the language of what the channel adds (the e-mail footer)


@dataclass(frozen=True)
class SendResult:
    message_id: int
    outcome: Outcome
    provider_message_id: str = ""
    error: str = ""
    retry_after: float | None = None


class ChannelInterface(Protocol):
    name: str

    def validate_message(self, envelope: Envelope) -> str | None:
        """A reason this message cannot be sent on this channel, or None."""

    def send_message(self, envelopes: list[Envelope]) -> list[SendResult]:
        """Send a batch (the channel reuses connections); one result per envelope."""

    def test_connection(self) -> None:
        """Raise unless the provider accepts our credentials."""


@runtime_checkable
class SettlesSends(Protocol):
    """A channel whose provider lists what it accepted (``SmsChannel``): its ``unknown`` sends are
    settled by asking (``messaging.settlement``)."""

    def accepted_since(self, to: str, since: dt.datetime) -> list[tuple[str, dt.datetime | None]]:
        """``(provider id, created at)`` of the messages to ``to`` the provider accepted from ``since`` on."""
