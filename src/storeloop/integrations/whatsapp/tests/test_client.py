"""The client against the running fake: window rule, templates, errors, retries, lost answers, webhooks."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from storeloop.core.errors import TerminalError, TransientError
from storeloop.integrations.whatsapp.client import WhatsAppClient
from storeloop.integrations.whatsapp.errors import (
    WhatsAppAuthError,
    WhatsAppInvalidRequest,
    WhatsAppRateLimited,
    WhatsAppRecipientOptedOut,
    WhatsAppTemplateError,
    WhatsAppTransientError,
    WhatsAppUndeliverable,
    WhatsAppWindowClosed,
)
from storeloop.integrations.whatsapp.fake import FakeWhatsApp
from storeloop.integrations.whatsapp.signature import sign

from .conftest import CUSTOMER, Receiver, RecordingLimiter

DAY = 24 * 3600


def test_test_connection_reports_the_number(client: WhatsAppClient, fake: FakeWhatsApp) -> None:
    info = client.test_connection()
    assert (info.id, info.display_phone_number, info.verified_name) == (
        "1234567890",
        "15550001111",
        "Storeloop Test Shop",
    )
    assert info.quality_rating == "GREEN"
    assert [(r.method, r.path, r.status) for r in fake.requests] == [("GET", "/v21.0/1234567890", 200)]


def test_wrong_or_expired_token_is_an_auth_error_and_not_retried(fake: FakeWhatsApp, sleeps: list[float]) -> None:
    wrong = WhatsAppClient("EAAG-wrong", fake.phone_number_id, base_url=fake.url, sleep=sleeps.append)
    with wrong, pytest.raises(WhatsAppAuthError) as info:
        wrong.test_connection()
    assert (info.value.code, info.value.status) == (190, 401)
    assert isinstance(info.value, TerminalError)
    fake.expired_tokens.add("EAAG-old")
    old = WhatsAppClient("EAAG-old", fake.phone_number_id, base_url=fake.url, sleep=sleeps.append)
    with old, pytest.raises(WhatsAppAuthError) as info:
        old.send_template(CUSTOMER, "order_update", "en_US", ["#1", "Fri"])
    assert info.value.subcode == 463
    assert len(fake.requests) == 2
    assert sleeps == []


def test_text_inside_the_window_is_sent(client: WhatsAppClient, fake: FakeWhatsApp) -> None:
    fake.simulate_inbound(CUSTOMER, "Where is my order?", deliver=False)
    sent = client.send_text("+1 (555) 123-4567", "It shipped today", callback_data="out-1")
    assert sent.wamid.startswith("wamid.")
    assert (sent.to, sent.message_status) == (CUSTOMER, None)
    [record] = fake.messages
    assert (record.to, record.type, record.text, record.callback_data) == (
        CUSTOMER,
        "text",
        "It shipped today",
        "out-1",
    )
    assert fake.sent_count(CUSTOMER) == 1


def test_text_outside_the_window_is_window_closed(client: WhatsAppClient, fake: FakeWhatsApp) -> None:
    with pytest.raises(WhatsAppWindowClosed) as info:
        client.send_text(CUSTOMER, "never wrote to us")
    assert info.value.code == 131047
    assert isinstance(info.value, TerminalError)
    fake.simulate_inbound(CUSTOMER, "hi", at=time.time() - DAY - 60, deliver=False)  # 24 h 01 min ago
    with pytest.raises(WhatsAppWindowClosed):
        client.send_text(CUSTOMER, "too late")
    fake.simulate_inbound(CUSTOMER, "hi again", at=time.time() - DAY + 60, deliver=False)  # 23 h 59 min ago
    client.send_text(CUSTOMER, "just in time")
    assert fake.sent_count(CUSTOMER) == 1
    assert len(fake.requests) == 3  # terminal errors are not retried


def test_template_goes_outside_the_window(client: WhatsAppClient, fake: FakeWhatsApp) -> None:
    sent = client.send_template(CUSTOMER, "order_update", "en_US", ["#727", "Friday"], callback_data="o-727")
    assert sent.message_status == "accepted"
    [record] = fake.messages
    assert (record.type, record.template, record.language, record.parameters) == (
        "template",
        "order_update",
        "en_US",
        ("#727", "Friday"),
    )
    components = [
        {"type": "body", "parameters": [{"type": "text", "text": "#728"}, {"type": "text", "text": "Monday"}]}
    ]
    client.send_template(CUSTOMER, "order_update", "en_US", components)
    assert fake.messages[-1].parameters == ("#728", "Monday")
    assert client.template_parameter_count(components) == 2


@pytest.mark.parametrize(
    ("name", "language", "params", "code"),
    [
        ("no_such_template", "en_US", [], 132001),
        ("order_update", "de_DE", ["#1", "Fri"], 132001),
        ("order_update", "en_US", ["#1"], 132000),
        ("order_update", "en_US", ["#1", "Fri", "extra"], 132000),
        ("order_update", "en_US", ["#1", " "], 132012),
    ],
)
def test_template_errors_are_terminal(
    client: WhatsAppClient, fake: FakeWhatsApp, name: str, language: str, params: list[str], code: int
) -> None:
    with pytest.raises(WhatsAppTemplateError) as info:
        client.send_template(CUSTOMER, name, language, params)
    assert info.value.code == code
    assert isinstance(info.value, TerminalError)
    assert fake.messages == []
    assert len(fake.requests) == 1


def test_opted_out_recipient(fake: FakeWhatsApp, client: WhatsAppClient) -> None:
    fake.opted_out.add(CUSTOMER)
    with pytest.raises(WhatsAppRecipientOptedOut) as info:
        client.send_template(CUSTOMER, "spring_sale", "en_US")
    assert info.value.code == 131050
    assert isinstance(info.value, TerminalError)
    fake.opt_out_marketing_only = True  # Meta's actual rule: utility templates still go
    client.send_template(CUSTOMER, "order_update", "en_US", ["#1", "Fri"])
    with pytest.raises(WhatsAppRecipientOptedOut):
        client.send_template(CUSTOMER, "spring_sale", "en_US")
    assert fake.sent_count(CUSTOMER) == 1


def test_bad_input_fails_before_any_request(client: WhatsAppClient, fake: FakeWhatsApp) -> None:
    for to in ("not a number", "+1 23", "", "07700900123"):  # national format is refused, not guessed
        with pytest.raises(WhatsAppInvalidRequest):
            client.send_template(to, "order_update", "en_US", ["a", "b"])
    with pytest.raises(WhatsAppInvalidRequest):
        client.send_text(CUSTOMER, " ")
    with pytest.raises(WhatsAppInvalidRequest, match="4096"):
        client.send_text(CUSTOMER, "x" * 4097)
    with pytest.raises(WhatsAppInvalidRequest):
        client.send_text(CUSTOMER, "hi", callback_data="x" * 513)
    with pytest.raises(TypeError):
        client.send_template(CUSTOMER, "order_update", "en_US", ["a", {"type": "body"}])  # type: ignore[list-item,arg-type]
    assert fake.requests == []


def test_throughput_limit_is_retried_then_ok_and_penalizes_the_limiter(
    fake: FakeWhatsApp, client: WhatsAppClient, sleeps: list[float], limiter: RecordingLimiter
) -> None:
    fake.faults.update({"fail_next": 1, "fail_next_code": 130429})
    client.send_template(CUSTOMER, "order_update", "en_US", ["#1", "Fri"])
    assert [r.status for r in fake.requests] == [429, 200]
    assert limiter.penalties == [1.0]
    assert len(sleeps) == 1
    assert 1.0 <= sleeps[0] <= 1.1
    assert limiter.acquired == 2  # every attempt asks the limiter first
    assert fake.sent_count(CUSTOMER) == 1


def test_pair_rate_limit_waits_without_penalizing_the_account(
    fake: FakeWhatsApp, client: WhatsAppClient, sleeps: list[float], limiter: RecordingLimiter
) -> None:
    fake.faults.update({"fail_next": 1, "fail_next_code": 131056})
    client.send_template(CUSTOMER, "order_update", "en_US", ["#1", "Fri"])
    assert limiter.penalties == []
    assert 6.0 <= sleeps[0] <= 6.6


def test_real_throughput_limit_gives_up_after_max_retries(
    fake: FakeWhatsApp, client: WhatsAppClient, limiter: RecordingLimiter
) -> None:
    fake.rate_limit_per_second = 0.01  # one message, then nothing for 100 s
    client.send_template(CUSTOMER, "order_update", "en_US", ["#1", "Fri"])
    # The recorded sleep does not wait, so every retry meets the empty bucket again.
    with pytest.raises(WhatsAppRateLimited) as info:
        client.send_template(CUSTOMER, "order_update", "en_US", ["#2", "Sat"])
    assert isinstance(info.value, TransientError)
    assert info.value.maybe_sent is False
    assert [r.status for r in fake.requests] == [200, 429, 429, 429]  # max_retries=2: no 429 storm
    assert fake.count_429 == 3
    assert limiter.penalties == [1.0, 1.0, 1.0]  # every 429, the last one too: others back off


def test_5xx_is_retried(fake: FakeWhatsApp, client: WhatsAppClient, sleeps: list[float]) -> None:
    fake.faults.update({"fail_next": 2, "fail_next_code": 131016})
    client.send_template(CUSTOMER, "order_update", "en_US", ["#1", "Fri"])
    assert [r.status for r in fake.requests] == [503, 503, 200]
    assert len(sleeps) == 2
    assert all(0 <= s <= 0.05 for s in sleeps)
    fake.faults.update({"fail_next": 5, "fail_next_code": 131000})
    with pytest.raises(WhatsAppTransientError) as info:
        client.test_connection()
    assert (info.value.code, info.value.status, info.value.maybe_sent) == (131000, 500, False)
    assert fake.sent_count(CUSTOMER) == 1


def test_proxy_gateway_error_on_a_send_is_maybe_sent(fake: FakeWhatsApp, client: WhatsAppClient) -> None:
    fake.faults.update({"fail_next": 1, "fail_next_status": 504})
    with pytest.raises(WhatsAppTransientError) as info:
        client.send_template(CUSTOMER, "order_update", "en_US", ["#1", "Fri"])
    assert info.value.maybe_sent is True
    assert len(fake.requests) == 1


def test_accept_then_drop_is_maybe_sent_and_never_resent(
    fake: FakeWhatsApp, client: WhatsAppClient, sleeps: list[float]
) -> None:
    fake.faults.update({"accept_then_drop": 1})
    with pytest.raises(WhatsAppTransientError) as info:
        client.send_template(CUSTOMER, "order_update", "en_US", ["#1", "Fri"], callback_data="out-9")
    assert info.value.maybe_sent is True
    assert isinstance(info.value, TransientError)
    assert fake.sent_count(CUSTOMER) == 1  # accepted once, not resent
    assert [r.status for r in fake.requests] == [0]
    assert sleeps == []
    assert fake.messages[0].callback_data == "out-9"  # what the caller reconciles with


def test_read_timeout_on_a_send_is_maybe_sent_but_a_read_is_retried(fake: FakeWhatsApp, sleeps: list[float]) -> None:
    fake.faults.update({"latency_ms": 300})
    with WhatsAppClient(
        fake.access_token, fake.phone_number_id, base_url=fake.url, timeout=0.05, max_retries=1, sleep=sleeps.append
    ) as c:
        with pytest.raises(WhatsAppTransientError, match="timed out") as info:
            c.send_template(CUSTOMER, "order_update", "en_US", ["#1", "Fri"])
        assert info.value.maybe_sent is True
        assert sleeps == []
        with pytest.raises(WhatsAppTransientError, match="timed out") as info:
            c.test_connection()
        assert info.value.maybe_sent is False
        assert len(sleeps) == 1


def test_connection_refused_is_transient_and_surely_not_sent(sleeps: list[float]) -> None:
    c = WhatsAppClient("EAAG-x", "1234567890", base_url="http://127.0.0.1:9", max_retries=1, sleep=sleeps.append)
    with c, pytest.raises(WhatsAppTransientError) as info:
        c.send_text(CUSTOMER, "hi")
    assert info.value.maybe_sent is False
    assert len(sleeps) == 1


def test_status_webhooks_reach_the_receiver_signed(
    fake: FakeWhatsApp, client: WhatsAppClient, receiver: Receiver
) -> None:
    fake.simulate_inbound(CUSTOMER, "STOP")
    assert receiver.wait_for(lambda r: len(r.batches) == 1)
    [inbound] = receiver.batches[0].messages
    assert (inbound.from_, inbound.text, inbound.keyword) == (CUSTOMER, "STOP", "stop")
    sent = client.send_text(CUSTOMER, "You are unsubscribed.", callback_data="out-2")
    assert receiver.wait_for(lambda r: r.statuses(sent.wamid) == ["sent", "delivered", "read"])
    updates = [s for b in receiver.batches for s in b.statuses]
    assert {s.callback_data for s in updates} == {"out-2"}
    assert {s.recipient for s in updates} == {CUSTOMER}
    assert updates[0].pricing_category == "service"
    assert receiver.rejected == 0
    for raw, header in receiver.raw:
        assert header == sign(fake.app_secret, raw)
    assert all(d.status == 200 for d in fake.deliveries)


def test_failed_delivery_and_async_errors_arrive_as_failed_statuses(
    fake: FakeWhatsApp, client: WhatsAppClient, receiver: Receiver
) -> None:
    fake.fail_delivery.add("447700900123")
    lost = client.send_template("447700900123", "order_update", "en_US", ["#1", "Fri"])
    fake.faults.update({"async_errors": True})
    late = client.send_text(CUSTOMER, "outside the window, reported later")  # 200 now, failed webhook later
    assert receiver.wait_for(lambda r: r.statuses(lost.wamid) == ["failed"] and r.statuses(late.wamid) == ["failed"])
    by_wamid = {s.wamid: s for b in receiver.batches for s in b.statuses}
    assert isinstance(by_wamid[lost.wamid].error(), WhatsAppUndeliverable)
    assert isinstance(by_wamid[late.wamid].error(), WhatsAppWindowClosed)
    assert fake.messages[-1].failed_code == 131047


def test_logs_carry_neither_token_nor_recipient(
    fake: FakeWhatsApp, caplog: pytest.LogCaptureFixture, sleeps: list[float]
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.faults.update({"fail_next": 2, "fail_next_code": 131000})
    with WhatsAppClient(
        fake.access_token, fake.phone_number_id, base_url=fake.url, sleep=sleeps.append, timeout=httpx.Timeout(2.0)
    ) as c:
        c.send_template(CUSTOMER, "order_update", "en_US", ["#1", "Fri"])
        assert fake.access_token not in repr(c)
    assert "retry" in caplog.text
    assert fake.access_token not in caplog.text
    assert CUSTOMER not in caplog.text
