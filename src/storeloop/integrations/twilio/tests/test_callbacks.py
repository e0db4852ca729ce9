"""Signed status callbacks and inbound messages from the fake, checked the way our webhook views will."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from storeloop.integrations.twilio.client import TwilioClient, key_from_callback_url
from storeloop.integrations.twilio.errors import TwilioRecipientOptedOut
from storeloop.integrations.twilio.fake import FakeTwilio
from storeloop.integrations.twilio.fake.callbacks import CallbackRecord, WebhookSender
from storeloop.integrations.twilio.models import parse_inbound, parse_status_callback
from storeloop.integrations.twilio.signature import SIGNATURE_HEADER, compute_signature, validate_signature

from .receiver import Receiver

TO = "+14155552671"
SIG = SIGNATURE_HEADER.lower()


def test_status_callbacks_are_signed_and_in_order(twilio: FakeTwilio, client: TwilioClient, receiver: Receiver) -> None:
    message = client.send_sms(TO, "Hi", status_callback=receiver.url(), idempotency_key="dispatch-7")
    received = receiver.wait_for(2)
    # No callback for the initial status (queued); then sent, delivered.
    assert [r.params["MessageStatus"] for r in received] == ["sent", "delivered"]
    for r in received:
        assert r.url == receiver.url() + "?sl_key=dispatch-7"
        assert validate_signature(twilio.auth_token, r.url, r.form, r.headers[SIG])
        assert not validate_signature("other-token", r.url, r.form, r.headers[SIG])
        assert r.headers["user-agent"] == "TwilioProxy/1.1"
        assert r.headers["i-twilio-idempotency-token"]
        assert key_from_callback_url(r.url) == "dispatch-7"
        update = parse_status_callback(r.form)
        assert (update.sid, update.to, update.from_, update.error_code) == (message.sid, TO, twilio.from_number, None)
    delivered = parse_status_callback(received[1].form)
    assert delivered.final
    assert delivered.raw_dlr_done_date is not None
    assert len(delivered.raw_dlr_done_date) == 10
    assert received[0].headers["i-twilio-idempotency-token"] != received[1].headers["i-twilio-idempotency-token"]
    assert twilio.flush()
    assert [c.status for c in twilio.callbacks] == [200, 200]


def test_messaging_service_reports_queued_then_sent_then_delivered(twilio: FakeTwilio, receiver: Receiver) -> None:
    with TwilioClient(
        twilio.account_sid,
        twilio.auth_token,
        base_url=twilio.url,
        messaging_service_sid=twilio.messaging_service_sid,
        status_callback=receiver.url(),
    ) as client:
        message = client.send_sms(TO, "a" * 200)
        received = receiver.wait_for(3)
        assert [r.params["MessageStatus"] for r in received] == ["queued", "sent", "delivered"]
        assert all(r.params["MessagingServiceSid"] == twilio.messaging_service_sid for r in received)
        assert all(validate_signature(twilio.auth_token, r.url, r.form, r.headers[SIG]) for r in received)
        assert twilio.flush()
        fetched = client.get_message(message.sid)
    assert (fetched.status, fetched.segments, fetched.from_) == ("delivered", 2, twilio.from_number)
    assert fetched.price == "-0.01580"


def test_failed_deliveries(twilio: FakeTwilio, client: TwilioClient, receiver: Receiver) -> None:
    twilio.fail_delivery.add("+14155552672")
    twilio.fail_sending.add("+14155552673")
    client.send_sms("+14155552672", "one", status_callback=receiver.url("/a"))
    client.send_sms("+14155552673", "two", status_callback=receiver.url("/b"))
    received = receiver.wait_for(3)
    by_path: dict[str, list[tuple[str, str | None]]] = {}
    for r in received:
        by_path.setdefault(r.url.rsplit("/", 1)[1], []).append((r.params["MessageStatus"], r.params.get("ErrorCode")))
    assert by_path == {"a": [("sent", None), ("undelivered", "30003")], "b": [("failed", "30008")]}
    undelivered = parse_status_callback(next(r.form for r in received if r.params["MessageStatus"] == "undelivered"))
    assert undelivered.failed
    assert undelivered.error_code == 30003


def test_callbacks_survive_an_unreachable_receiver(twilio: FakeTwilio, client: TwilioClient) -> None:
    client.send_sms(TO, "Hi", status_callback="http://127.0.0.1:9/hooks")
    assert twilio.flush()
    callbacks = twilio.callbacks
    assert [c.status for c in callbacks] == [None, None]
    assert all(c.attempts == 2 for c in callbacks)  # one retry on connection failure, like Twilio
    assert twilio.messages[0].status == "delivered"  # the message's life does not depend on the receiver


def test_inbound_stop_start_help(twilio: FakeTwilio, client: TwilioClient, receiver: Receiver) -> None:
    url = receiver.url("/hooks/twilio/inbound?store=3")
    record = twilio.simulate_inbound(TO, " Stop ", url)
    assert record.status == 200
    (hook,) = receiver.wait_for(1)
    assert hook.url == url
    assert validate_signature(twilio.auth_token, hook.url, hook.form, hook.headers[SIG])
    assert hook.headers[SIG] == compute_signature(twilio.auth_token, url, hook.params)
    inbound = parse_inbound(hook.form)
    assert (inbound.from_, inbound.to, inbound.body, inbound.keyword) == (TO, twilio.from_number, " Stop ", "stop")
    # Twilio's own STOP filtering: the next send is refused with 21610.
    with pytest.raises(TwilioRecipientOptedOut):
        client.send_sms(TO, "Sale!")
    twilio.simulate_inbound(TO, "start", url)
    twilio.simulate_inbound(TO, "HELP", url)
    twilio.simulate_inbound(TO, "Where is my parcel?", url)
    hooks = receiver.wait_for(4)
    assert [parse_inbound(h.form).keyword for h in hooks] == ["stop", "start", "help", None]
    assert client.send_sms(TO, "Welcome back").status == "queued"


def test_inbound_with_advanced_opt_out_carries_opt_out_type(receiver: Receiver) -> None:
    with FakeTwilio(advanced_opt_out=True) as twilio:
        twilio.simulate_inbound(TO, "unsubscribe", receiver.url(), messaging_service=True)
    (hook,) = receiver.wait_for(1)
    assert hook.params["OptOutType"] == "STOP"
    assert hook.params["MessagingServiceSid"] == twilio.messaging_service_sid
    assert parse_inbound(hook.form).keyword == "stop"


def test_forged_webhook_is_rejected(twilio: FakeTwilio, receiver: Receiver) -> None:
    url = receiver.url("/hooks/twilio/inbound")
    forged = {"MessageSid": "SM" + "0" * 32, "From": TO, "To": twilio.from_number, "Body": "STOP"}
    httpx.post(url, data=forged, headers={SIGNATURE_HEADER: compute_signature("guess", url, forged)})
    (hook,) = receiver.wait_for(1)
    assert not validate_signature(twilio.auth_token, hook.url, hook.form, hook.headers[SIG])


# --- scheduling (WebhookSender) ---------------------------------------------------------------------

HOUR = 3600.0


@pytest.fixture
def sender() -> Iterator[WebhookSender]:
    records: list[CallbackRecord] = []
    started = WebhookSender(lambda: "token", records.append)
    yield started
    started.stop()


def _never() -> None:
    raise AssertionError("a step due in an hour ran")


def test_a_step_due_before_the_others_runs_at_its_time(sender: WebhookSender) -> None:
    for _ in range(1000):
        sender.schedule(HOUR, _never)  # the thread now waits an hour for the first of these
    ran = threading.Event()
    sender.schedule(0.0, ran.set)  # earlier than everything queued: the thread must be woken for it
    assert ran.wait(5)
    assert sender.scheduled == 1000
    assert not sender.idle(0.01)


def test_steps_run_in_due_order_then_idle(sender: WebhookSender) -> None:
    order: list[str] = []
    sender.schedule(0.03, lambda: order.append("third"))
    sender.schedule(0.01, lambda: order.append("first"))
    sender.schedule(0.02, lambda: order.append("second"))
    sender.schedule(0.03, lambda: order.append("fourth"))  # same delay, scheduled later: runs later
    assert sender.idle(5)
    assert order == ["first", "second", "third", "fourth"]
    assert sender.scheduled == 0


def test_clear_and_stop_drop_pending_steps(sender: WebhookSender) -> None:
    sender.schedule(HOUR, _never)
    assert not sender.idle(0.01)
    sender.clear()
    assert sender.scheduled == 0
    assert sender.idle(0.01)
    sender.schedule(HOUR, _never)
    sender.stop()
    assert sender.scheduled == 0
    assert sender.idle(0.01)


def test_callbacks_an_hour_away_wait_and_are_dropped_by_reset(
    twilio: FakeTwilio, client: TwilioClient, receiver: Receiver
) -> None:
    twilio.faults.update({"callback_delay_ms": 3_600_000})  # what bench/dispatch.py sets
    sids = [client.send_sms(f"+1415555{n:04d}", "Hi", status_callback=receiver.url()).sid for n in range(50)]
    assert not twilio.flush(timeout=0.05)
    assert [(m.sid, m.status) for m in twilio.messages] == [(sid, "queued") for sid in sids]
    assert receiver.received == []
    assert twilio.callbacks == []
    twilio.reset()
    assert twilio.flush(timeout=1.0)
