"""Signed bounce/complaint webhook, DSN and ARF parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from storeloop.integrations.smtp.bounces import (
    MAX_EVENTS,
    BounceParseError,
    parse_arf,
    parse_bounce_events,
    parse_dsn,
    sign,
    verify,
)
from storeloop.integrations.smtp.client import SmtpSender
from storeloop.integrations.smtp.fake import FakeSmtpServer, make_arf
from storeloop.integrations.smtp.message import build_mime, serialize

from .conftest import make_spec

SECRET = "whsec-store-1"
BOUNCE = {
    "type": "bounce",
    "email": "Customer@Example.COM",
    "bounce_type": "hard",
    "reason": "550 5.1.1 user unknown",
    "message_id": "<msg_0001@shop.example>",
    "occurred_at": "2025-05-01T12:00:00Z",
}


def test_signature_round_trip() -> None:
    body = orjson.dumps(BOUNCE)
    header = sign(SECRET, body)
    assert header.startswith("sha256=")
    assert len(header) == 7 + 64
    assert verify(SECRET, body, header)
    assert verify(SECRET.encode(), body, "SHA256=" + header[7:].upper())  # case-insensitive hex


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha256=00", "md5=abc", "garbage", sign("other-secret", orjson.dumps(BOUNCE))],
)
def test_bad_signatures_are_refused(header: str | None) -> None:
    assert not verify(SECRET, orjson.dumps(BOUNCE), header)


def test_signature_covers_the_exact_bytes() -> None:
    body = orjson.dumps(BOUNCE)
    assert not verify(SECRET, body + b" ", sign(SECRET, body))
    assert not verify("", body, sign("", body))  # an empty secret never verifies


def test_single_event() -> None:
    [event] = parse_bounce_events(orjson.dumps(BOUNCE))
    assert event.type == "bounce"
    assert event.bounce_type == "hard"
    assert event.suppress
    assert event.email == "Customer@example.com"  # domain lower-cased, local part kept
    assert event.message_id == "<msg_0001@shop.example>"
    assert event.occurred_at == datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    assert event.source == "webhook"


def test_list_of_events_with_normalisation() -> None:
    events = parse_bounce_events(
        orjson.dumps(
            [
                {**BOUNCE, "bounce_type": "soft", "message_id": "msg_2@shop.example", "provider_extra": 1},
                {
                    "type": "complaint",
                    "email": "x@example.com",
                    "bounce_type": "hard",
                    "occurred_at": "2025-05-01T14:00:00+02:00",
                },
            ]
        )
    )
    soft, complaint = events
    assert soft.bounce_type == "soft"
    assert not soft.suppress
    assert soft.message_id == "<msg_2@shop.example>"
    assert complaint.type == "complaint"
    assert complaint.bounce_type is None
    assert complaint.suppress
    assert complaint.reason == ""
    assert complaint.message_id is None
    assert complaint.occurred_at == datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def test_malformed_json_is_reported() -> None:
    with pytest.raises(BounceParseError, match="not valid JSON") as info:
        parse_bounce_events(b'{"type": "bounce",')
    assert info.value.field is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**BOUNCE, "type": "unsubscribe"}, "type"),
        ({k: v for k, v in BOUNCE.items() if k != "bounce_type"}, "bounce_type"),
        ({**BOUNCE, "email": "no-at-sign"}, "email"),
        ({**BOUNCE, "email": 7}, "email"),
        ({**BOUNCE, "occurred_at": "2025-05-01T12:00:00"}, "occurred_at"),
        ({**BOUNCE, "occurred_at": "yesterday"}, "occurred_at"),
        ({k: v for k, v in BOUNCE.items() if k != "occurred_at"}, "occurred_at"),
        ({**BOUNCE, "reason": ["x"]}, "reason"),
        ({**BOUNCE, "message_id": "<has space@x>"}, "message_id"),
        ([BOUNCE, {**BOUNCE, "email": ""}], "[1].email"),
        ([BOUNCE, "not an object"], "[1]"),
    ],
)
def test_invalid_events_name_the_field(payload: object, field: str) -> None:
    with pytest.raises(BounceParseError) as info:
        parse_bounce_events(orjson.dumps(payload))
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_errors_do_not_echo_the_address() -> None:
    with pytest.raises(BounceParseError) as info:
        parse_bounce_events(orjson.dumps({**BOUNCE, "email": "secret person@example.com"}))
    assert "secret" not in str(info.value)


def test_body_shape_and_size_limits() -> None:
    with pytest.raises(BounceParseError, match="list of event objects"):
        parse_bounce_events(b'"bounce"')
    with pytest.raises(BounceParseError, match=str(MAX_EVENTS)):
        parse_bounce_events(orjson.dumps([BOUNCE] * (MAX_EVENTS + 1)))
    assert parse_bounce_events(b"[]") == []


def test_dsn_from_the_fake_relay(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    fake.bounce_recipients["customer1@example.com"] = ("5.1.1", "smtp; 550 5.1.1 <customer1@example.com>: User unknown")
    sender.send(make_spec(1))  # accepted now, bounced later: the asynchronous case
    [dsn] = fake.dsns
    event = parse_dsn(dsn)
    assert event is not None
    assert (event.type, event.email, event.bounce_type, event.status) == (
        "bounce",
        "customer1@example.com",
        "hard",
        "5.1.1",
    )
    assert event.message_id == "<msg_0001@shop.example>"  # ties the bounce to our message
    assert event.reason.startswith("550 5.1.1")
    assert event.source == "dsn"
    assert event.suppress


def test_delayed_dsn_is_a_soft_bounce(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    sender.send(make_spec(1))
    dsn = fake.make_dsn(fake.messages[0], action="delayed", status="4.4.1", diagnostic="smtp; 451 4.4.1 no answer")
    event = parse_dsn(dsn)
    assert event is not None
    assert event.bounce_type == "soft"
    assert not event.suppress


def test_dsn_reporting_success_or_other_mail_is_none(fake: FakeSmtpServer, sender: SmtpSender) -> None:
    sender.send(make_spec(1))
    assert parse_dsn(fake.make_dsn(fake.messages[0], action="delivered", status="2.0.0")) is None
    assert parse_dsn(fake.messages[0].raw) is None
    assert parse_dsn(b"not even an e-mail") is None


def test_dsn_without_recipient_fields_is_an_error() -> None:
    raw = (
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n"
        b"--b--\r\n"
    )
    with pytest.raises(BounceParseError) as info:
        parse_dsn(raw)
    assert info.value.field == "Final-Recipient"


def test_arf_complaint() -> None:
    original = serialize(build_mime(make_spec(3), "shop.example"))
    event = parse_arf(make_arf(original, "customer3@example.com"))
    assert event is not None
    assert (event.type, event.email, event.reason, event.source) == (
        "complaint",
        "customer3@example.com",
        "abuse",
        "arf",
    )
    assert event.message_id == "<msg_0003@shop.example>"
    assert event.suppress
    assert parse_arf(original) is None
