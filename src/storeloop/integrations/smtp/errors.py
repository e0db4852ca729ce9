"""Errors raised by the SMTP sender, each on one side of the core retry axis.

| failure                                               | class                    | retry? |
|-------------------------------------------------------|--------------------------|--------|
| any 4xx reply (421, 450, 451, 452, 454 …)             | SmtpTransientError       | yes    |
| timeout, refused, reset, DNS, server disconnected     | SmtpTransientError       | yes    |
| 5xx to RCPT (550/551/553 user unknown, 552, 554 …)    | SmtpRecipientRejected    | no     |
| 5xx to MAIL FROM (sender not allowed, 553 …)          | SmtpSenderRejected       | no     |
| 5xx after DATA (554 rejected, 552 too big, 550 5.7.x) | SmtpMessageRejected      | no     |
| 535/534/538/530 auth, AUTH not offered               | SmtpAuthError            | no     |
| certificate invalid, STARTTLS not offered, TLS broken | SmtpConfigError          | no     |
| spec cannot be turned into MIME                       | SmtpInvalidMessage       | no     |

Servers quote addresses back ("550 5.1.1 <bob@x>: user unknown"); every message kept on an error is
*scrubbed* (addresses replaced by ``<email>``) because errors end up in logs and task records.
"""

from __future__ import annotations

import re
from typing import Literal

from storeloop.core.errors import TerminalError, TransientError

Stage = Literal["connect", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "noop", "message"]

_EMAIL = re.compile(r"<?[^\s@\"'<>\[\],;:()]+@[^\s@\"'<>\[\],;:()]+>?")
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")

# RFC 3463 statuses meaning "this mailbox does not exist / will never accept mail": suppress it.
SUPPRESS_STATUSES = frozenset({"5.1.0", "5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1"})
_UNKNOWN_USER = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|address)|does not exist|"
    r"mailbox (unavailable|not found|disabled)|invalid (recipient|mailbox|address)|address rejected",
    re.IGNORECASE,
)
# Rate-limit wording seen from relays (SES "454 Throttling failure", O365 "421 4.7.0 Too many
# connections", "rate limit exceeded"). Plain "try again later" is not enough: greylisting says it too.
_THROTTLE = re.compile(r"\brate\b|throttl|too many|slow down", re.IGNORECASE)


def scrub(text: str) -> str:
    """Remove e-mail addresses (personal data) from a server reply before it is kept or logged."""
    return _EMAIL.sub("<email>", text)


def split_reply(reply: str | bytes) -> tuple[str | None, str]:
    """``(enhanced status, text)`` from a reply text such as ``5.1.1 <x>: user unknown``."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    text = " ".join(text.split())  # multi-line replies arrive joined by "\n"
    match = _ENHANCED.match(text)
    if match is None:
        return None, text
    return match.group(0), text[match.end() :].strip()


def is_throttle(code: int, text: str) -> bool:
    """True when a temporary reply says "too fast": 421/454, or 4xx text about rate/throttling/too many."""
    return code in (421, 454) or (400 <= code < 500 and bool(_THROTTLE.search(text)))


class SmtpError(Exception):
    """Base class. ``code`` (SMTP reply, None for network failures), ``enhanced_status`` (RFC 3463,
    e.g. ``5.1.1``), ``stage`` (the command that failed), ``message_id`` (set by the sender)."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        enhanced_status: str | None = None,
        stage: Stage | None = None,
        message_id: str | None = None,
    ) -> None:
        message = scrub(message)
        Exception.__init__(self, message)
        self.message = message
        self.code = code
        self.enhanced_status = enhanced_status
        self.stage = stage
        self.message_id = message_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.code is not None:
            parts.append(f"code={self.code}")
        if self.enhanced_status:
            parts.append(f"status={self.enhanced_status}")
        if self.stage:
            parts.append(f"stage={self.stage}")
        return " ".join(parts)


class SmtpTransientError(SmtpError, TransientError):
    """Worth retrying later. ``retry_after`` is set when the server signalled throttling.

    ``maybe_delivered`` is True when the connection failed *after* the whole message (with its
    terminating dot) was sent and before the server's final reply arrived: the server may have
    queued it. A retry then sends the same Message-ID again (see ``client`` on "never twice").
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        enhanced_status: str | None = None,
        stage: Stage | None = None,
        message_id: str | None = None,
        retry_after: float | None = None,
        maybe_delivered: bool = False,
    ) -> None:
        super().__init__(message, code=code, enhanced_status=enhanced_status, stage=stage, message_id=message_id)
        self.retry_after = retry_after
        self.maybe_delivered = maybe_delivered


class SmtpTerminalError(SmtpError, TerminalError):
    """Retrying the same message will not help."""


class SmtpAuthError(SmtpTerminalError):
    """Credentials refused (535), mechanism too weak (534), encryption required (538), auth required
    (530) or the server offers no AUTH at all. Fix the store's SMTP settings."""


class SmtpConfigError(SmtpTerminalError):
    """TLS cannot be established as configured: certificate not trusted, STARTTLS not offered (we
    never fall back to plain text), TLS on a plain port. Fix the settings, do not retry."""


class SmtpSenderRejected(SmtpTerminalError):
    """5xx to ``MAIL FROM``: the relay will not send for this envelope sender."""


class SmtpMessageRejected(SmtpTerminalError):
    """5xx after ``DATA``: content refused (spam/policy 554, 550 5.7.x) or too big (552)."""


class SmtpInvalidMessage(SmtpTerminalError):
    """The spec could not be turned into a valid message (e.g. a bad Message-ID domain)."""


class SmtpRecipientRejected(SmtpTerminalError):
    """5xx to ``RCPT TO``: this recipient only; the connection and other messages are fine.

    ``suppress`` is True when the reply says the mailbox does not exist (550/551/553 with 5.1.x or
    5.2.1, or "user unknown"-like text without an enhanced code): the caller adds the address to
    the suppression list. A policy refusal (550 5.7.1) or a full mailbox (552) is not suppressed.
    """

    @property
    def suppress(self) -> bool:
        if self.code not in (550, 551, 553):
            return False
        if self.enhanced_status is not None:
            return self.enhanced_status in SUPPRESS_STATUSES
        return bool(_UNKNOWN_USER.search(self.message))


def error_from_reply(code: int, reply: str | bytes, *, stage: Stage, message_id: str | None = None) -> SmtpError:
    """Map an SMTP reply (code + text) at ``stage`` onto the error tree."""
    status, text = split_reply(reply)
    message = f"SMTP {stage} refused: {code} {status + ' ' if status else ''}{text}".strip()
    cls: type[SmtpError]
    if not 500 <= code < 600:
        # 4xx is temporary by definition. Anything neither 4xx nor 5xx here is a protocol surprise
        # (e.g. 250 where 354 was due), which a later attempt on a new connection may not meet.
        cls = SmtpTransientError
    elif stage == "auth" or code in (534, 535, 538) or (code == 530 and "starttls" not in text.lower()):
        cls = SmtpAuthError
    elif stage == "starttls" or code == 530:
        cls = SmtpConfigError
    elif stage == "rcpt":
        cls = SmtpRecipientRejected
    elif stage == "mail":
        cls = SmtpSenderRejected
    elif stage == "data":
        cls = SmtpMessageRejected
    else:
        cls = SmtpTerminalError
    return cls(message, code=code, enhanced_status=status, stage=stage, message_id=message_id)
