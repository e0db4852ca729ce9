"""Parsing of Twilio JSON and webhooks, keyword classification and the error mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storeloop.core.errors import TerminalError, TransientError
from storeloop.integrations.twilio.errors import (
    TwilioAuthError,
    TwilioError,
    TwilioInvalidNumber,
    TwilioNotFound,
    TwilioNotMobile,
    TwilioPermissionError,
    TwilioRateLimited,
    TwilioRecipientOptedOut,
    TwilioTransientError,
    TwilioUnreachable,
    TwilioValidationError,
    error_from_response,
    parse_retry_after,
    scrub,
)
from storeloop.integrations.twilio.models import (
    SentMessage,
    classify_keyword,
    parse_inbound,
    parse_status_callback,
)

# The Message resource as documented (trimmed), numbers as strings, dates RFC 2822.
DOC_MESSAGE = {
    "sid": "SM" + "a" * 32,
    "account_sid": "AC" + "b" * 32,
    "messaging_service_sid": None,
    "from": "+15557122661",
    "to": "+15558675310",
    "body": "Hi",
    "status": "queued",
    "direction": "outbound-api",
    "num_segments": "1",
    "num_media": "0",
    "price": None,
    "price_unit": "USD",
    "error_code": None,
    "error_message": None,
    "api_version": "2010-04-01",
    "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
    "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
    "date_sent": None,
}


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ("STOP", "stop"),
        ("stop", "stop"),
        ("  Stop \n", "stop"),
        ("STOPALL", "stop"),
        ("unsubscribe", "stop"),
        ("Cancel", "stop"),
        ("END", "stop"),
        ("quit", "stop"),
        ("REVOKE", "stop"),
        ("optout", "stop"),
        ("START", "start"),
        ("yes", "start"),
        ("Unstop", "start"),
        ("HELP", "help"),
        ("info", "help"),
        ("STOP please", None),  # only a whole-message keyword counts
        ("please stop", None),
        ("STOP.", None),
        ("S T O P", None),
        ("ſtop", None),  # "ſ".upper() == "S": not a keyword
        ("", None),
        (None, None),
        ("Where is my order?", None),
    ],
)
def test_classify_keyword(body: str | None, keyword: str | None) -> None:
    assert classify_keyword(body) == keyword


def test_sent_message_from_documented_json() -> None:
    message = SentMessage.from_json(DOC_MESSAGE)
    assert message.sid == "SM" + "a" * 32
    assert (message.status, message.to, message.from_, message.segments) == (
        "queued",
        "+15558675310",
        "+15557122661",
        1,
    )
    assert message.date_created == datetime(2023, 8, 24, 5, 1, 45, tzinfo=UTC)
    assert message.price is None
    assert message.date_sent is None
    assert not message.failed
    failed = SentMessage.from_json({**DOC_MESSAGE, "status": "undelivered", "error_code": 30003, "price": "-0.0079"})
    assert failed.failed
    assert failed.error_code == 30003
    assert failed.price == "-0.0079"
    with pytest.raises(ValueError, match="without a sid"):
        SentMessage.from_json({"status": "queued"})


def test_parse_status_callback() -> None:
    params = {
        "AccountSid": "AC" + "b" * 32,
        "ApiVersion": "2010-04-01",
        "From": "+15557122661",
        "To": "+15558675310",
        "MessageSid": "SM" + "a" * 32,
        "SmsSid": "SM" + "a" * 32,
        "MessageStatus": "undelivered",
        "SmsStatus": "undelivered",
        "ErrorCode": "30003",
        "RawDlrDoneDate": "2308240502",
        "SomethingNew": "ignored",
    }
    update = parse_status_callback(params)
    assert (update.sid, update.status, update.error_code) == ("SM" + "a" * 32, "undelivered", 30003)
    assert (update.to, update.from_, update.raw_dlr_done_date) == ("+15558675310", "+15557122661", "2308240502")
    assert update.final
    assert update.failed
    assert not update.opted_out
    # Lists (parse_form output) work too; a Messaging Service reports 21610 asynchronously.
    listed = {k: [v] for k, v in params.items()} | {"ErrorCode": ["21610"], "MessageStatus": ["failed"]}
    assert parse_status_callback(listed).opted_out
    sent = parse_status_callback({"MessageSid": "SM1", "MessageStatus": "sent"})
    assert not sent.final
    assert sent.error_code is None
    with pytest.raises(ValueError, match="MessageStatus"):
        parse_status_callback({"MessageSid": "SM1"})


def test_parse_inbound() -> None:
    params = {
        "MessageSid": "SM" + "c" * 32,
        "SmsMessageSid": "SM" + "c" * 32,
        "AccountSid": "AC" + "b" * 32,
        "From": "+14155552671",
        "To": "+15005550006",
        "Body": " stop ",
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
    }
    inbound = parse_inbound(params)
    assert (inbound.from_, inbound.to, inbound.body, inbound.num_segments) == (
        "+14155552671",
        "+15005550006",
        " stop ",
        1,
    )
    assert inbound.keyword == "stop"
    assert parse_inbound({**params, "Body": "thanks!"}).keyword is None
    # Twilio's Advanced Opt-Out verdict wins over our own reading of the body.
    assert parse_inbound({**params, "Body": "ARRET", "OptOutType": "STOP"}).keyword == "stop"
    with pytest.raises(ValueError, match="From"):
        parse_inbound({"MessageSid": "SM1"})


@pytest.mark.parametrize(
    ("status", "code", "cls", "scope"),
    [
        (400, 21211, TwilioInvalidNumber, "recipient"),
        (400, 21614, TwilioNotMobile, "recipient"),
        (400, 21612, TwilioUnreachable, "recipient"),
        (400, 21610, TwilioRecipientOptedOut, "recipient"),
        (400, 21408, TwilioPermissionError, "account"),
        (400, 21606, TwilioPermissionError, "account"),
        (401, 20003, TwilioAuthError, "account"),
        (401, None, TwilioAuthError, "account"),
        (403, None, TwilioPermissionError, "account"),
        (404, 20404, TwilioNotFound, "message"),
        (400, 21602, TwilioValidationError, "message"),
        (422, None, TwilioValidationError, "message"),
        (429, 20429, TwilioRateLimited, "account"),
        (500, 20500, TwilioTransientError, "message"),
        (503, None, TwilioTransientError, "message"),
        (408, None, TwilioTransientError, "message"),
    ],
)
def test_error_mapping(status: int, code: int | None, cls: type[TwilioError], scope: str) -> None:
    body = {"code": code, "message": "m", "more_info": None, "status": status} if code else None
    error = error_from_response(status, body)
    assert type(error) is cls
    assert error.scope == scope
    assert error.status == status
    transient = issubclass(cls, TwilioTransientError)
    assert isinstance(error, TransientError) is transient
    assert isinstance(error, TerminalError) is not transient


def test_error_details() -> None:
    body = {"code": 21211, "message": "Invalid 'To' Phone Number: +1555867531", "status": 400}
    error = error_from_response(400, body)
    assert error.message == "Invalid 'To' Phone Number: <phone>"  # personal data scrubbed
    assert error.more_info == "https://www.twilio.com/docs/errors/21211"
    assert str(error) == "Invalid 'To' Phone Number: <phone> code=21211 status=400"
    auth = error_from_response(401, {"code": 20003, "message": "Authenticate", "detail": "Bad token."})
    assert auth.message == "Authenticate: Bad token."
    limited = error_from_response(429, {"code": 20429, "message": "Too Many Requests"}, {"Retry-After": "3"})
    assert isinstance(limited, TwilioRateLimited)
    assert limited.retry_after == 3.0
    assert limited.maybe_sent is False  # a 429 is never processed
    on_send = error_from_response(502, None, maybe_sent=True)
    assert isinstance(on_send, TwilioTransientError)
    assert on_send.maybe_sent
    assert on_send.message == "Twilio answered HTTP 502"


def test_scrub_and_retry_after() -> None:
    assert scrub("To +1 (415) 555-2671 and 4155552671") == "To <phone> and <phone>"
    assert scrub("POST /2010-04-01/Accounts/AC1234567890/Messages.json code 21610") == (
        "POST /2010-04-01/Accounts/AC1234567890/Messages.json code 21610"
    )
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("-1") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now=datetime(2026, 1, 1, tzinfo=UTC).timestamp()) == 10
