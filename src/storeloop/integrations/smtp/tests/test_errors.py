"""The reply -> error mapping table (see errors.py)."""

from __future__ import annotations

import pytest

from storeloop.core.errors import TerminalError, TransientError
from storeloop.integrations.smtp.errors import (
    SmtpAuthError,
    SmtpConfigError,
    SmtpError,
    SmtpMessageRejected,
    SmtpRecipientRejected,
    SmtpSenderRejected,
    SmtpTerminalError,
    SmtpTransientError,
    Stage,
    error_from_reply,
    is_throttle,
    scrub,
)


@pytest.mark.parametrize(
    ("code", "text", "stage", "expected"),
    [
        (421, "4.7.0 Too many connections", "mail", SmtpTransientError),
        (450, "4.2.1 mailbox busy", "rcpt", SmtpTransientError),
        (451, "4.3.0 local problem", "data", SmtpTransientError),
        (454, "4.7.0 TLS not available", "starttls", SmtpTransientError),
        (454, "4.7.0 Temporary authentication failure", "auth", SmtpTransientError),
        (550, "5.1.1 user unknown", "rcpt", SmtpRecipientRejected),
        (551, "5.1.6 user not local", "rcpt", SmtpRecipientRejected),
        (553, "5.1.3 bad address syntax", "rcpt", SmtpRecipientRejected),
        (554, "5.7.1 relay access denied", "rcpt", SmtpRecipientRejected),
        (553, "5.7.1 sender not owned by user", "mail", SmtpSenderRejected),
        (554, "5.7.1 message rejected as spam", "data", SmtpMessageRejected),
        (552, "5.3.4 message too big", "data", SmtpMessageRejected),
        (535, "5.7.8 credentials invalid", "auth", SmtpAuthError),
        (534, "5.7.9 mechanism too weak", "auth", SmtpAuthError),
        (530, "5.7.0 Authentication required", "mail", SmtpAuthError),
        (530, "Must issue a STARTTLS command first", "mail", SmtpConfigError),
        (554, "5.3.2 no service", "connect", SmtpTerminalError),
    ],
)
def test_reply_mapping(code: int, text: str, stage: Stage, expected: type[SmtpError]) -> None:
    error = error_from_reply(code, text.encode(), stage=stage)
    assert type(error) is expected
    assert error.code == code
    assert isinstance(error, TransientError) == (code < 500)
    assert isinstance(error, TerminalError) == (code >= 500)


@pytest.mark.parametrize(
    ("code", "text", "suppress"),
    [
        (550, "5.1.1 <a@example.com>: Recipient address rejected: User unknown", True),
        (550, "5.2.1 mailbox disabled", True),
        (550, "Requested action not taken: mailbox unavailable", True),  # no enhanced code: by wording
        (550, "5.7.1 Recipient address rejected: Access denied", False),
        (552, "5.2.2 mailbox full", False),
        (554, "5.7.1 relay access denied", False),
    ],
)
def test_which_rejections_suppress_the_address(code: int, text: str, suppress: bool) -> None:
    error = error_from_reply(code, text, stage="rcpt")
    assert isinstance(error, SmtpRecipientRejected)
    assert error.suppress is suppress


def test_throttle_detection() -> None:
    assert is_throttle(421, "4.7.0 Too many connections")
    assert is_throttle(454, "Throttling failure: Maximum sending rate exceeded")
    assert is_throttle(451, "4.7.500 rate limit exceeded")
    assert not is_throttle(451, "4.7.1 Greylisted, please try again later")
    assert not is_throttle(550, "5.7.1 too many recipients")


def test_multiline_replies_and_scrubbing() -> None:
    error = error_from_reply(
        550, b"5.1.1 The email account that you tried to reach\ndoes not exist: bob@x.example", stage="rcpt"
    )
    assert error.enhanced_status == "5.1.1"
    assert "bob@" not in str(error)
    assert "\n" not in error.message
    assert scrub("<bob@example.com> and carol@example.org") == "<email> and <email>"
