"""Signed bounce/complaint/delivery webhook, DSN and ARF parsing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from storeloop.integrations.smtp.bounces import (
    MAX_EVENTS,
    BounceParseError,
    parse_arf,
    parse_dsn,
    parse_email_events,
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
    "recipient": "Customer@Example.COM",
    "bounce_type": "hard",
    "reason": "550 5.1.1 user unknown",
    "message_id": "<msg_0001@shop.example>",
    "timestamp": "2025-05-01T12:00:00Z",
}


def body(*events: Any) -> bytes:
    return orjson.dumps({"events": list(events)})


def test_signature_round_trip() -> None:
    raw = body(BOUNCE)
    header = sign(SECRET, raw)
    assert header.startswith("sha256=")
    assert len(header) == 7 + 64
    assert verify(SECRET, raw, header)
    assert verify(SECRET.encode(), raw, "SHA256=" + header[7:].upper())  # case-insensitive hex


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "sha256=00", "md5=abc", "garbage", sign("other-secret", body(BOUNCE))],
)
def test_bad_signatures_are_refused(header: str | None) -> None:
    assert not verify(SECRET, body(BOUNCE), header)


def test_signature_covers_the_exact_bytes() -> None:
    raw = body(BOUNCE)
    assert not verify(SECRET, raw + b" ", sign(SECRET, raw))
    assert not verify("", raw, sign("", raw))  # an empty secret never verifies


def test_single_event() -> None:
    [event] = parse_email_events(body(BOUNCE))
    assert event.type == "bounce"
    assert event.bounce_type == "hard"
    assert event.suppress
    assert event.email == "Customer@example.com"  # domain lower-cased, local part kept
    assert event.message_id == "<msg_0001@shop.example>"
    assert event.occurred_at == datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    assert event.source == "webhook"


def test_several_events_with_normalisation() -> None:
    soft, complaint, delivered = parse_email_events(
        body(
            {**BOUNCE, "bounce_type": "soft", "message_id": "0100018f-provider-id", "provider_extra": 1},
            {
                "type": "complaint",
                "recipient": "x@example.com",
                "bounce_type": "hard",
                "timestamp": "2025-05-01T14:00:00+02:00",
            },
            {"type": "delivered", "recipient": "<y@example.com>", "timestamp": 1746100800},
        )
    )
    assert soft.bounce_type == "soft"
    assert not soft.suppress
    assert soft.message_id == "0100018f-provider-id"  # a provider's id is kept as given
    assert complaint.type == "complaint"
    assert complaint.bounce_type is None
    assert complaint.suppress
    assert complaint.reason == ""
    assert complaint.message_id is None
    assert complaint.occurred_at == datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    assert (delivered.type, delivered.email, delivered.suppress) == ("delivered", "y@example.com", False)
    assert delivered.occurred_at == datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def test_malformed_json_is_reported() -> None:
    with pytest.raises(BounceParseError, match="not valid JSON") as info:
        parse_email_events(b'{"events": [')
    assert info.value.field is None


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({**BOUNCE, "type": "unsubscribe"}, "events[0].type"),
        ({k: v for k, v in BOUNCE.items() if k != "bounce_type"}, "events[0].bounce_type"),
        ({**BOUNCE, "recipient": "no-at-sign"}, "events[0].recipient"),
        ({**BOUNCE, "recipient": 7}, "events[0].recipient"),
        ({k: v for k, v in BOUNCE.items() if k != "recipient"}, "events[0].recipient"),
        ({**BOUNCE, "timestamp": "2025-05-01T12:00:00"}, "events[0].timestamp"),
        ({**BOUNCE, "timestamp": "yesterday"}, "events[0].timestamp"),
        ({**BOUNCE, "timestamp": 1746100800000}, "events[0].timestamp"),  # milliseconds
        ({**BOUNCE, "timestamp": True}, "events[0].timestamp"),
        ({k: v for k, v in BOUNCE.items() if k != "timestamp"}, "events[0].timestamp"),
        ({**BOUNCE, "reason": ["x"]}, "events[0].reason"),
        ({**BOUNCE, "message_id": "<has space@x>"}, "events[0].message_id"),
        ({**BOUNCE, "message_id": 42}, "events[0].message_id"),
        ("not an object", "events[0]"),
    ],
)
def test_invalid_events_name_the_field(event: object, field: str) -> None:
    with pytest.raises(BounceParseError) as info:
        parse_email_events(body(event))
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_the_failing_event_is_named_by_its_position() -> None:
    with pytest.raises(BounceParseError) as info:
        parse_email_events(body(BOUNCE, {**BOUNCE, "recipient": ""}))
    assert info.value.field == "events[1].recipient"


def test_errors_do_not_echo_the_address() -> None:
    with pytest.raises(BounceParseError) as info:
        parse_email_events(body({**BOUNCE, "recipient": "secret person@example.com"}))
    assert "secret" not in str(info.value)


def test_body_shape_and_size_limits() -> None:
    for raw in (b'"bounce"', orjson.dumps([BOUNCE]), b'{"event": []}'):
        with pytest.raises(BounceParseError, match='an object with an "events" list'):
            parse_email_events(raw)
    with pytest.raises(BounceParseError) as info:
        parse_email_events(b'{"events": {"type": "bounce"}}')
    assert info.value.field == "events"
    with pytest.raises(BounceParseError, match=str(MAX_EVENTS)):
        parse_email_events(body(*[BOUNCE] * (MAX_EVENTS + 1)))
    assert parse_email_events(b'{"events": []}') == []


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
