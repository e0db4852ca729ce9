"""TwilioClient against the running fake: sends, errors, retries and the "maybe sent" contract."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storeloop.core.errors import TerminalError, TransientError
from storeloop.integrations.tests.canned import Answer, CannedServer
from storeloop.integrations.twilio.client import TwilioClient, callback_url_with_key, key_from_callback_url
from storeloop.integrations.twilio.errors import (
    TwilioAuthError,
    TwilioInvalidNumber,
    TwilioNotFound,
    TwilioNotMobile,
    TwilioPermissionError,
    TwilioRateLimited,
    TwilioRecipientError,
    TwilioRecipientOptedOut,
    TwilioTransientError,
    TwilioValidationError,
)
from storeloop.integrations.twilio.fake import FakeTwilio

from .conftest import RecordingLimiter, wait_until

TO = "+14155552671"
MESSAGES = "/2010-04-01/Accounts/{sid}/Messages.json"


def _messages_path(twilio: FakeTwilio) -> str:
    return MESSAGES.format(sid=twilio.account_sid)


def test_send_ok(twilio: FakeTwilio, client: TwilioClient, limiter: RecordingLimiter) -> None:
    message = client.send_sms(TO, "Your order #1042 has shipped 📦", status_callback="https://hooks.test/s")
    assert message.sid.startswith("SM")
    assert len(message.sid) == 34
    assert (message.status, message.to, message.from_, message.segments) == ("queued", TO, twilio.from_number, 1)
    assert message.estimate is not None
    assert message.estimate.encoding == "UCS-2"
    stored = twilio.messages
    assert [(m.to, m.body) for m in stored] == [(TO, "Your order #1042 has shipped 📦")]
    request = twilio.requests[-1]
    assert (request.method, request.path, request.status) == ("POST", _messages_path(twilio), 201)
    assert request.form == {
        "To": TO,
        "Body": "Your order #1042 has shipped 📦",
        "From": twilio.from_number,
        "StatusCallback": "https://hooks.test/s",
    }
    assert limiter.acquired == 1


def test_send_normalises_the_number_and_carries_the_key_on_the_callback(twilio: FakeTwilio) -> None:
    with TwilioClient(
        twilio.account_sid,
        twilio.auth_token,
        base_url=twilio.url,
        messaging_service_sid=twilio.messaging_service_sid,
        status_callback="https://hooks.test/status?store=7",
    ) as client:
        message = client.send_sms("+1 (415) 555-2671", "Hi", idempotency_key="dispatch-42")
    assert message.status == "accepted"  # Messaging Service: no sender picked yet
    assert message.segments == 0
    form = twilio.requests[-1].form
    assert form is not None
    assert form["To"] == TO
    assert form["MessagingServiceSid"] == twilio.messaging_service_sid
    assert "From" not in form
    assert form["StatusCallback"] == "https://hooks.test/status?store=7&sl_key=dispatch-42"
    assert key_from_callback_url(form["StatusCallback"]) == "dispatch-42"


def test_callback_url_key_helpers() -> None:
    assert callback_url_with_key("https://h.test/s", "k1") == "https://h.test/s?sl_key=k1"
    assert callback_url_with_key("https://h.test/s?sl_key=old&a=", "k2") == "https://h.test/s?a=&sl_key=k2"
    assert key_from_callback_url("https://h.test/s?a=1") is None


def _reference_callback_url(url: str, key: str, param: str) -> str:
    """What ``callback_url_with_key`` must give: the URL re-assembled by urllib with the key set."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != param] + [(param, key)]
    return urlunsplit(parts._replace(query=urlencode(query)))


@settings(max_examples=300, deadline=None)
@given(
    url=st.sampled_from(["https://h.test/s", "https://h.test/s?a=1&sl_key=x", "https://h.test/?b=%20#frag",
                         "https://h.test:8443/p/a%2Fb?sl_key=&c=&d=1#f", "http://[::1]/x?", "https://h.test#only"]),
    key=st.text(min_size=1, max_size=40),
    param=st.sampled_from(["sl_key", "key", "a", "b c"]),
)  # fmt: skip
def test_callback_url_with_key_matches_urllib(url: str, key: str, param: str) -> None:
    assert callback_url_with_key(url, key, param) == _reference_callback_url(url, key, param)


def test_get_and_find_messages(twilio: FakeTwilio, client: TwilioClient) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    first = client.send_sms(TO, "one")
    client.send_sms(TO, "two")
    client.send_sms("+14155552672", "other")
    assert twilio.flush()
    fetched = client.get_message(first.sid)
    assert (fetched.sid, fetched.status, fetched.body) == (first.sid, "delivered", "one")
    assert fetched.price == "-0.00790"
    assert fetched.date_sent is not None
    assert [m.body for m in client.find_messages(TO)] == ["two", "one"]  # newest first
    assert [m.body for m in client.find_messages(TO, body="one", since=before)] == ["one"]
    # Whole seconds are compared: "since the second the first was created" includes the first (was
    # `since=now()`, which failed when the clock ticked over between the sends and the query).
    assert fetched.date_created is not None
    assert len(client.find_messages(TO, since=fetched.date_created)) == 2
    assert client.find_messages(TO, since=datetime.now(UTC) + timedelta(minutes=1)) == []
    with pytest.raises(TwilioNotFound):
        client.get_message("SM" + "0" * 32)
    with pytest.raises(ValueError, match="message SID"):
        client.get_message("../../Accounts")


def test_test_connection(twilio: FakeTwilio, client: TwilioClient, make_client: Callable[..., TwilioClient]) -> None:
    info = client.test_connection()
    assert (info.sid, info.status, info.active, info.trial) == (twilio.account_sid, "active", True, False)
    with pytest.raises(TwilioAuthError) as wrong:
        make_client(auth_token="wrong").test_connection()
    assert (wrong.value.status, wrong.value.code) == (401, 20003)
    assert "AuthToken was incorrect" in wrong.value.message
    twilio.account_status = "suspended"
    with pytest.raises(TwilioAuthError, match="suspended"):
        client.test_connection()


def test_auth_error_on_send_is_terminal_and_not_retried(
    twilio: FakeTwilio, make_client: Callable[..., TwilioClient], sleeps: list[float]
) -> None:
    with pytest.raises(TwilioAuthError) as info:
        make_client(auth_token="wrong").send_sms(TO, "Hi")
    assert isinstance(info.value, TerminalError)
    assert info.value.scope == "account"
    assert [r.status for r in twilio.requests] == [401]
    assert sleeps == []
    assert twilio.messages == []


def test_invalid_number_from_twilio_21211(twilio: FakeTwilio, make_client: Callable[..., TwilioClient]) -> None:
    client = make_client(validate_numbers=False)
    with pytest.raises(TwilioInvalidNumber) as info:
        client.send_sms("12345", "Hi")
    assert (info.value.status, info.value.code, info.value.scope) == (400, 21211, "recipient")
    assert info.value.more_info == "https://www.twilio.com/docs/errors/21211"
    assert twilio.messages == []


def test_invalid_number_is_caught_before_any_request(twilio: FakeTwilio, client: TwilioClient) -> None:
    with pytest.raises(TwilioInvalidNumber) as info:
        client.send_sms("+1 555 867 5310", "Hi")  # 555-xxxx: not a valid US number
    assert info.value.code == 21211
    assert info.value.status is None
    assert "<phone>" in info.value.message  # the number itself is not repeated
    assert twilio.requests == []


def test_opted_out_recipient_21610(twilio: FakeTwilio, client: TwilioClient) -> None:
    twilio.opted_out.add(TO)
    with pytest.raises(TwilioRecipientOptedOut) as info:
        client.send_sms(TO, "Sale!")
    assert isinstance(info.value, TwilioRecipientError)
    assert isinstance(info.value, TerminalError)
    assert info.value.code == 21610
    assert twilio.sent_count(TO) == 0


def test_landline_21614(twilio: FakeTwilio, client: TwilioClient) -> None:
    twilio.landlines.add(TO)
    with pytest.raises(TwilioNotMobile) as info:
        client.send_sms(TO, "Hi")
    assert info.value.code == 21614


def test_bad_sender_is_an_account_problem(twilio: FakeTwilio, make_client: Callable[..., TwilioClient]) -> None:
    with pytest.raises(TwilioPermissionError) as info:
        make_client(from_number="+14155550100").send_sms(TO, "Hi")
    assert (info.value.code, info.value.scope) == (21606, "account")


def test_body_checks_are_local(twilio: FakeTwilio, client: TwilioClient) -> None:
    with pytest.raises(TwilioValidationError) as empty:
        client.send_sms(TO, "  ")
    assert empty.value.code == 21602
    with pytest.raises(TwilioValidationError) as long:
        client.send_sms(TO, "x" * 1601)
    assert long.value.code == 21617
    with pytest.raises(ValueError, match="idempotency_key"):
        client.send_sms(TO, "Hi", idempotency_key="has spaces")
    assert twilio.requests == []


def test_429_is_retried_then_ok(
    twilio: FakeTwilio, client: TwilioClient, sleeps: list[float], limiter: RecordingLimiter
) -> None:
    twilio.faults.update({"fail_next": 2, "fail_next_status": 429})
    message = client.send_sms(TO, "Hi")
    assert message.status == "queued"
    assert [r.status for r in twilio.requests] == [429, 429, 201]
    assert twilio.sent_count(TO) == 1
    assert limiter.acquired == 3  # every attempt asks the limiter first
    assert len(limiter.penalties) == 2  # every worker on the account backs off
    assert sleeps == limiter.penalties
    assert all(0.025 <= s <= 0.05 for s in sleeps)  # equal jitter under backoff_max: never ~0


def test_429_without_retry_after_waits_about_a_second(
    twilio: FakeTwilio, make_client: Callable[..., TwilioClient], sleeps: list[float]
) -> None:
    twilio.faults.update({"fail_next": 1, "fail_next_status": 429})
    make_client(backoff_max=30.0).send_sms(TO, "Hi")
    assert len(sleeps) == 1
    assert 0.5 <= sleeps[0] <= 1.0  # the first wait's ceiling is 1 s


def test_429_honours_retry_after(
    twilio: FakeTwilio, make_client: Callable[..., TwilioClient], sleeps: list[float], limiter: RecordingLimiter
) -> None:
    twilio.faults.update({"fail_next": 1, "fail_next_status": 429, "retry_after": 3})
    make_client(backoff_max=5.0).send_sms(TO, "Hi")
    assert limiter.penalties == [3.0]
    assert sleeps == [3.0]


def test_long_retry_after_is_left_to_the_task_engine(
    twilio: FakeTwilio, client: TwilioClient, sleeps: list[float], limiter: RecordingLimiter
) -> None:
    twilio.faults.update({"fail_next": 1, "fail_next_status": 429, "retry_after": 60})
    with pytest.raises(TwilioRateLimited) as info:
        client.send_sms(TO, "Hi")
    assert info.value.retry_after == 60.0  # the engine waits at least that long
    assert limiter.penalties == [60.0]
    assert sleeps == []
    assert twilio.messages == []


def test_rate_limit_retries_are_bounded(twilio: FakeTwilio, client: TwilioClient) -> None:
    twilio.faults.update({"fail_next": 10, "fail_next_status": 429})
    with pytest.raises(TwilioRateLimited) as info:
        client.send_sms(TO, "Hi")
    assert isinstance(info.value, TransientError)
    assert info.value.maybe_sent is False
    assert [r.status for r in twilio.requests] == [429, 429, 429]  # max_retries=2


def test_real_rate_limit_of_the_fake() -> None:
    with FakeTwilio(rate_limit_per_second=2, seed=5) as limited:
        client = TwilioClient(
            limited.account_sid,
            limited.auth_token,
            base_url=limited.url,
            from_number=limited.from_number,
            max_retries=0,
        )
        with client:
            client.test_connection()
            client.test_connection()  # the bucket holds 2 tokens
            with pytest.raises(TwilioRateLimited) as info:
                client.test_connection()
        assert info.value.code == 20429
        assert [r.status for r in limited.requests] == [200, 200, 429]


def test_5xx_on_a_read_is_retried(twilio: FakeTwilio, client: TwilioClient, sleeps: list[float]) -> None:
    twilio.faults.update({"fail_next": 2, "fail_next_status": 502})  # gateway HTML, not JSON
    client.test_connection()
    assert [r.status for r in twilio.requests] == [502, 502, 200]
    assert len(sleeps) == 2
    assert all(0 <= s <= 0.05 for s in sleeps)
    twilio.clear_requests()
    twilio.faults.update({"fail_next": 5, "fail_next_status": 500})
    with pytest.raises(TwilioTransientError) as info:
        client.test_connection()
    assert (info.value.status, info.value.code, info.value.maybe_sent) == (500, 20500, False)
    assert [r.status for r in twilio.requests] == [500, 500, 500]


def test_5xx_on_a_send_is_not_resent(twilio: FakeTwilio, client: TwilioClient, sleeps: list[float]) -> None:
    twilio.faults.update({"fail_next": 1, "fail_next_status": 503})
    with pytest.raises(TwilioTransientError) as info:
        client.send_sms(TO, "Hi")
    assert info.value.maybe_sent is True  # Twilio could have accepted it before failing
    assert info.value.status == 503
    assert [r.status for r in twilio.requests] == [503]
    assert sleeps == []


def test_accept_then_drop_is_maybe_sent_and_sent_once(twilio: FakeTwilio, client: TwilioClient) -> None:
    twilio.faults.update({"accept_then_drop": 1})
    since = datetime.now(UTC) - timedelta(seconds=5)
    with pytest.raises(TwilioTransientError) as info:
        client.send_sms(TO, "Your code is 123456", idempotency_key="d-1", status_callback="https://h.test/s")
    assert info.value.maybe_sent is True
    assert isinstance(info.value, TransientError)
    assert "123456" not in str(info.value)
    assert twilio.sent_count(TO) == 1  # accepted exactly once, never resent by the client
    assert [r.status for r in twilio.requests] == [0]
    assert twilio.duplicates() == []
    # The dispatcher's reconciliation finds the message instead of sending it again.
    found = client.find_messages(TO, since=since, body="Your code is 123456")
    assert [m.sid for m in found] == [twilio.messages[0].sid]


def test_read_timeout_on_a_send_is_maybe_sent(twilio: FakeTwilio, make_client: Callable[..., TwilioClient]) -> None:
    twilio.faults.update({"latency_ms": 300})
    client = make_client(timeout=httpx.Timeout(0.1))
    with pytest.raises(TwilioTransientError, match="timed out") as info:
        client.send_sms(TO, "Hi")
    assert info.value.maybe_sent is True
    wait_until(lambda: twilio.sent_count(TO) == 1)  # the fake went on and accepted it
    assert len([r for r in twilio.requests if r.method == "POST"]) == 1


def test_connection_refused_is_retried_even_for_a_send(make_client: Callable[..., TwilioClient]) -> None:
    client = make_client(base_url="http://127.0.0.1:9", max_retries=1)
    with pytest.raises(TwilioTransientError) as info:
        client.send_sms(TO, "Hi")
    assert info.value.maybe_sent is False  # nothing reached Twilio: safe to send again


def test_non_json_2xx_on_a_send_is_maybe_sent(sleeps: list[float]) -> None:
    portal = Answer(200, b"<html>captive portal</html>", (("Content-Type", "text/html"),))
    with CannedServer(default=portal) as proxy:
        client = TwilioClient(
            "AC" + "1" * 32, "t", base_url=proxy.url, from_number="+15005550006", max_retries=3, sleep=sleeps.append
        )
        with client, pytest.raises(TwilioTransientError, match="no JSON object") as info:
            client.send_sms(TO, "Hi")
    assert info.value.maybe_sent is True
    assert info.value.status == 200
    assert [(r.method, r.target) for r in proxy.requests] == [("POST", MESSAGES.format(sid="AC" + "1" * 32))]
    assert sleeps == []  # not resent


def test_sends_share_one_kept_alive_connection() -> None:
    sid = "AC" + "1" * 32
    created = Answer.json(201, {"sid": "SM" + "2" * 32, "status": "queued", "to": TO, "num_segments": "1"})
    with (
        CannedServer(default=created) as twilio,
        TwilioClient(sid, "tok", base_url=twilio.url, from_number="+15005550006") as client,
    ):
        assert [client.send_sms(TO, f"Hi {i}").status for i in range(5)] == ["queued"] * 5
    assert twilio.accepted == 1
    assert [r.body for r in twilio.requests] == [
        f"To=%2B14155552671&Body=Hi+{i}&From=%2B15005550006".encode() for i in range(5)
    ]
    first = twilio.requests[0].headers
    assert first["authorization"] == "Basic " + base64.b64encode(f"{sid}:tok".encode()).decode()
    assert (first["user-agent"], first["accept"]) == ("Storeloop/0.1 (twilio-client)", "application/json")


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="account_sid"):
        TwilioClient("AC123", "t", from_number="+15005550006")
    with pytest.raises(ValueError, match="messaging_service_sid or from_number"):
        TwilioClient("AC" + "1" * 32, "t")
    with pytest.raises(ValueError, match="from_number"):
        TwilioClient("AC" + "1" * 32, "t", from_number="not a sender!")
    for sender in ("+15005550006", "MyShop", "12345"):  # number, alphanumeric ID, short code
        TwilioClient("AC" + "1" * 32, "t", from_number=sender).close()
    client = TwilioClient("AC" + "1" * 32, "secret-token", from_number="+15005550006")
    assert "secret-token" not in repr(client)
    client.close()


def test_logs_carry_neither_token_nor_numbers_nor_bodies(
    twilio: FakeTwilio, make_client: Callable[..., TwilioClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="storeloop.integrations.twilio")
    client = make_client()
    twilio.faults.update({"fail_next": 1, "fail_next_status": 429})
    client.send_sms(TO, "secret body", idempotency_key="k-1")
    twilio.faults.update({"accept_then_drop": 1})
    with pytest.raises(TwilioTransientError):
        client.send_sms(TO, "secret body 2")
    text = caplog.text
    assert "rate limited" in text
    assert "not resending" in text
    assert twilio.auth_token not in text
    assert "4155552671" not in text
    assert "secret body" not in text
