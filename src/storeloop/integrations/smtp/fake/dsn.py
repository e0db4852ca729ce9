"""Delivery status notifications (RFC 3464) and feedback reports (RFC 5965) shaped like real MTAs send.

The text follows what Postfix writes, so ``bounces.parse_dsn`` / ``parse_arf`` are tested on the
layout they meet in practice (notification text, machine-readable report, original headers).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email.utils import format_datetime

_CRLF = b"\r\n"


def _original_headers(original: bytes) -> bytes:
    end = original.find(b"\r\n\r\n")
    if end < 0:
        end = original.find(b"\n\n")
    head = original if end < 0 else original[:end]
    return head.replace(b"\r\n", b"\n").replace(b"\n", _CRLF)


def _envelope(subject: str, to: str, reporting_mta: str, content_type: str, when: datetime) -> list[str]:
    return [
        f"From: MAILER-DAEMON@{reporting_mta} (Mail Delivery System)",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {format_datetime(when, usegmt=True)}",
        f"Message-ID: <{uuid.uuid4().hex}@{reporting_mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        content_type,
        "",
        "This is a MIME-encapsulated message.",
        "",
    ]


def make_dsn(
    original: bytes,
    recipient: str,
    *,
    envelope_from: str = "",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <recipient>: Recipient address rejected: User unknown",
    action: str = "failed",
    reporting_mta: str = "fake-smtp.storeloop.test",
    when: datetime | None = None,
) -> bytes:
    """A ``multipart/report; report-type=delivery-status`` bounce for ``original`` (raw bytes)."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    boundary = f"dsn-{uuid.uuid4().hex}"
    date = format_datetime(when, usegmt=True)
    subject = "Undelivered Mail Returned to Sender" if action == "failed" else "Delayed Mail (still being retried)"
    content_type = f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"'
    lines = _envelope(subject, envelope_from or "<>", reporting_mta, content_type, when)
    lines += [
        f"--{boundary}",
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"This is the mail system at host {reporting_mta}.",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients.",
        "",
        f"--{boundary}",
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {reporting_mta}",
        f"Arrival-Date: {date}",
        "",
        f"Final-Recipient: rfc822; {recipient}",
        f"Original-Recipient: rfc822;{recipient}",
        f"Action: {action}",
        f"Status: {status}",
        f"Diagnostic-Code: {diagnostic}",
        f"Last-Attempt-Date: {date}",
        "",
        f"--{boundary}",
        "Content-Description: Undelivered Message Headers",
        "Content-Type: text/rfc822-headers",
        "",
    ]
    head = _CRLF.join(line.encode("ascii") for line in lines) + _CRLF
    tail = _CRLF + _CRLF + f"--{boundary}--".encode("ascii") + _CRLF
    return head + _original_headers(original) + tail


def make_arf(
    original: bytes,
    recipient: str,
    *,
    feedback_type: str = "abuse",
    reporting_mta: str = "fbl.fake-isp.test",
    when: datetime | None = None,
) -> bytes:
    """A ``multipart/report; report-type=feedback-report`` spam complaint about ``original``."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    boundary = f"arf-{uuid.uuid4().hex}"
    content_type = f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"'
    lines = _envelope("Complaint about message", f"fbl@{reporting_mta}", reporting_mta, content_type, when)
    lines += [
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "This is an email abuse report for an email message received from your network.",
        "",
        f"--{boundary}",
        "Content-Type: message/feedback-report",
        "",
        f"Feedback-Type: {feedback_type}",
        "User-Agent: storeloop-fake-fbl/1.0",
        "Version: 1",
        f"Original-Rcpt-To: {recipient}",
        f"Arrival-Date: {format_datetime(when, usegmt=True)}",
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "",
    ]
    head = _CRLF.join(line.encode("ascii") for line in lines) + _CRLF
    tail = _CRLF + _CRLF + f"--{boundary}--".encode("ascii") + _CRLF
    return head + _original_headers(original) + tail
