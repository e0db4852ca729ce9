"""SmsChannel against the real fake Twilio on loopback: outcome mapping and its consequences."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine

from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.core.errors import ValidationError
from storeloop.integrations.twilio.fake import FakeTwilio
from storeloop.messaging.channels.base import Envelope, Outcome
from storeloop.messaging.channels.connections import check_channel, connect_twilio
from storeloop.messaging.channels.factory import channel_for, close_channels
from storeloop.messaging.dispatcher import MessageDispatcher
from storeloop.messaging.models import Message, MessagingConnection
from storeloop.messaging.templates import TemplateRepository
from storeloop.messaging.templating import Rendered

pytestmark = pytest.mark.django_db
NOON = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)  # 14:00 in Berlin: outside SMS quiet hours
ANN = "+4915112345601"
BOB = "+4915112345602"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio(seed=3) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_channels() -> Iterator[None]:
    yield
    close_channels()


@pytest.fixture
def connection(store: Any, twilio: FakeTwilio) -> MessagingConnection:
    return connect_twilio(store_id=store.pk, account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                          from_number=twilio.from_number, base_url=twilio.url, messages_per_second=1000,
                          status_callback="http://127.0.0.1:9/webhooks/twilio/status")  # fmt: skip


def envelope(n: int, to: str = ANN, text: str = "") -> Envelope:
    rendered = Rendered(subject="", text=text or f"Your code is {n}", html="")
    return Envelope(message_id=n, idempotency_key=str(uuid.UUID(int=n)), to=to, rendered=rendered, marketing=False)


def outcomes(results: list[Any]) -> list[Outcome]:
    return [r.outcome for r in results]


def test_a_sent_sms_carries_our_key_on_its_status_callback(
    store: Any, twilio: FakeTwilio, connection: MessagingConnection
) -> None:
    [result] = channel_for(store, "sms").send_message([envelope(1)])
    [message] = twilio.messages
    assert (result.outcome, result.provider_message_id) == (Outcome.SENT, message.sid)
    assert (message.to, message.body) == (ANN, "Your code is 1")
    assert message.status_callback is not None
    assert f"sl_key={uuid.UUID(int=1)}" in message.status_callback


@pytest.mark.parametrize(
    ("number_set", "expected"),
    [("opted_out", Outcome.OPTED_OUT), ("landlines", Outcome.UNDELIVERABLE), ("invalid", Outcome.UNDELIVERABLE)],
)
def test_recipient_verdicts_of_twilio(
    store: Any, twilio: FakeTwilio, connection: MessagingConnection, number_set: str, expected: Outcome
) -> None:
    getattr(twilio.numbers, number_set).add(ANN)
    results = channel_for(store, "sms").send_message([envelope(1), envelope(2, to=BOB)])
    assert outcomes(results) == [expected, Outcome.SENT]  # about one recipient: the batch goes on
    assert ANN[3:] not in results[0].error  # phone numbers are scrubbed from kept errors


def test_a_number_our_check_refuses_fails_without_a_request(
    store: Any, twilio: FakeTwilio, connection: MessagingConnection
) -> None:
    results = channel_for(store, "sms").send_message([envelope(1, to="0151 1234"), envelope(2, text=" ")])
    assert outcomes(results) == [Outcome.FAILED, Outcome.FAILED]
    assert "E.164" in results[0].error
    assert "empty" in results[1].error
    assert twilio.requests == []


@pytest.mark.parametrize(("fault", "processed"), [({"fail_next": 1, "fail_next_status": 500}, 0),
                                                  ({"accept_then_drop": 1}, 1)])  # fmt: skip
def test_a_send_twilio_may_have_accepted_is_unknown_and_the_rest_waits(
    store: Any, twilio: FakeTwilio, connection: MessagingConnection, fault: dict[str, int], processed: int
) -> None:
    twilio.faults.update(fault)
    results = channel_for(store, "sms").send_message([envelope(1), envelope(2, to=BOB)])
    assert outcomes(results) == [Outcome.UNKNOWN, Outcome.RETRY]
    assert results[1].error.startswith("not attempted")
    assert len(twilio.messages) == processed  # the client did not try again on its own


def test_a_rate_limit_is_retried_later_with_twilios_hint(
    store: Any, twilio: FakeTwilio, connection: MessagingConnection
) -> None:
    twilio.faults.update({"fail_next": 1, "fail_next_status": 429, "retry_after": 30})
    results = channel_for(store, "sms").send_message([envelope(1), envelope(2, to=BOB)])
    assert outcomes(results) == [Outcome.RETRY, Outcome.RETRY]
    assert [r.retry_after for r in results] == [30.0, 30.0]
    assert twilio.messages == []


def test_wrong_credentials_fail_the_check_and_the_batch(store: Any, twilio: FakeTwilio) -> None:
    connection = connect_twilio(store_id=store.pk, account_sid=twilio.account_sid, auth_token="wrong",
                                from_number=twilio.from_number, base_url=twilio.url)  # fmt: skip
    with pytest.raises(ValidationError) as info:
        check_channel(connection)
    assert info.value.code == "channel_check_failed"
    results = channel_for(store, "sms").send_message([envelope(1), envelope(2, to=BOB)])
    assert outcomes(results) == [Outcome.FAILED, Outcome.FAILED]
    assert len([r for r in twilio.requests if r.method == "POST"]) == 1  # the second was not attempted


def test_check_channel_accepts_the_real_credentials(
    store: Any, twilio: FakeTwilio, connection: MessagingConnection
) -> None:
    assert check_channel(connection) == "ok"


# --- through the dispatcher -----------------------------------------------------------------------


def queue_sms(dispatcher: MessageDispatcher, store: Any, contact: Contact, key: str, purpose: str) -> Message:
    repo = TemplateRepository()
    version = repo.save_template(store, "sms-news", "sms", body_text="Hi {{ contact.first_name }}, news")
    repo.publish(version)
    return dispatcher.queue_message(store=store, contact=contact, channel="sms", purpose=purpose, template=version,
                                    dedupe_key=key)  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_a_carrier_opt_out_withdraws_sms_consent(
    store: Any, twilio: FakeTwilio, connection: MessagingConnection
) -> None:
    contact = Contact.objects.create(store=store, phone=ANN, first_name="Ann", country="DE")
    gate = MessagingConsentManager()
    twilio.numbers.opted_out.add(ANN)
    dispatcher = MessageDispatcher(channel_for)
    with time_machine.travel(NOON, tick=True):
        gate.grant_consent(contact, "sms", "marketing", source="checkout")
        queue_sms(dispatcher, store, contact, "sms-1", "marketing")
        assert dispatcher.process_queue() == Counter({"opted_out": 1})
        assert gate.has_consent(contact, "sms", "marketing").reason == "withdrawn"
        assert gate.has_consent(contact, "sms", "transactional").reason == "withdrawn"
        queue_sms(dispatcher, store, contact, "sms-2", "transactional")
        assert dispatcher.process_queue() == Counter({"suppressed": 1})
    assert twilio.messages == []


@pytest.mark.django_db(transaction=True)
def test_a_landline_is_suppressed_by_the_dispatcher(
    store: Any, twilio: FakeTwilio, connection: MessagingConnection
) -> None:
    contact = Contact.objects.create(store=store, phone=ANN, first_name="Ann", country="DE")
    twilio.numbers.landlines.add(ANN)
    dispatcher = MessageDispatcher(channel_for)
    with time_machine.travel(NOON, tick=True):
        queue_sms(dispatcher, store, contact, "sms-1", "transactional")
        assert dispatcher.process_queue() == Counter({"undeliverable": 1})
        gate = MessagingConsentManager()
        assert gate.has_consent(contact, "sms", "transactional").reason == "suppressed:hard_bounce"


@pytest.mark.django_db(transaction=True)
def test_an_sms_whose_answer_was_lost_is_never_resent_while_a_rate_limited_one_goes_later(
    store: Any, twilio: FakeTwilio, connection: MessagingConnection
) -> None:
    ann = Contact.objects.create(store=store, phone=ANN, first_name="Ann", country="DE")
    bob = Contact.objects.create(store=store, phone=BOB, first_name="Bob", country="DE")
    twilio.faults.update({"accept_then_drop": 1})
    dispatcher = MessageDispatcher(channel_for)
    with time_machine.travel(NOON, tick=True) as clock:
        queue_sms(dispatcher, store, ann, "sms-ann", "transactional")
        assert dispatcher.process_queue() == Counter({"unknown": 1})
        twilio.faults.update({"fail_next": 1, "fail_next_status": 429, "retry_after": 30})
        queue_sms(dispatcher, store, bob, "sms-bob", "transactional")
        assert dispatcher.process_queue() == Counter({"retry": 1})
        bob_message = Message.objects.get(dedupe_key="sms-bob")
        assert bob_message.not_before >= NOON + dt.timedelta(seconds=30)
        close_channels()  # a fresh worker: this process's limiter still honours Twilio's 30 s back-off
        clock.shift(dt.timedelta(hours=1))
        assert dispatcher.process_queue() == Counter({"sent": 1})
    assert (twilio.sent_count(ANN), twilio.sent_count(BOB)) == (1, 1)
    assert twilio.duplicates() == []
    assert Message.objects.get(dedupe_key="sms-ann").status == "unknown"
