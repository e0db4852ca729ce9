"""Settling ``unknown`` texts with Twilio: accepted ones become ``sent``, the rest go out again, once.

Through the dispatcher, the real Twilio channel and the fake Twilio on loopback."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine

from storeloop.contacts.models import Contact
from storeloop.integrations.smtp.fake import FakeSmtpServer
from storeloop.integrations.twilio.fake import FakeTwilio
from storeloop.messaging.channels.base import ChannelInterface, Envelope, SendResult
from storeloop.messaging.channels.connections import connect_smtp, connect_twilio
from storeloop.messaging.channels.factory import channel_for, close_channels
from storeloop.messaging.dispatcher import MessageDispatcher, reap_stuck_sends
from storeloop.messaging.models import Message
from storeloop.messaging.settlement import REQUEUED_REASON, SETTLED_REASON, settle_unknown_sends
from storeloop.messaging.templates import TemplateRepository
from storeloop.stores.models import Store

pytestmark = pytest.mark.django_db(transaction=True)  # the dispatcher builds channels in worker threads
NOON = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)  # 14:00 in Berlin: outside SMS quiet hours
LATER = dt.timedelta(minutes=3)  # past the settlement's grace of two minutes


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio(seed=3) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _setup(settings: Any) -> Iterator[None]:
    settings.PUBLIC_URL = "https://loop.example"
    yield
    close_channels()


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(NOON, tick=True) as traveller:
        yield traveller


def texts(store: Any, twilio: FakeTwilio, count: int) -> list[Contact]:
    """``count`` contacts, each with a queued transactional text."""
    connect_twilio(store_id=store.pk, account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                   from_number=twilio.from_number, base_url=twilio.url, messages_per_second=500)  # fmt: skip
    repo = TemplateRepository()
    version = repo.save_template(store, "cod", "sms", body_text="{{ contact.first_name }}, your parcel is on its way")
    repo.publish(version)
    dispatcher = MessageDispatcher(channel_for)
    contacts = []
    for i in range(count):
        contact = Contact.objects.create(store=store, phone=f"+49151123456{i:02}", first_name=f"C{i}", country="DE")
        dispatcher.queue_message(store=store, contact=contact, channel="sms", purpose="transactional",
                                 template=version, dedupe_key=f"cod-{i}")  # fmt: skip
        contacts.append(contact)
    return contacts


def drain(batch_size: int = 50) -> Counter[str]:
    dispatcher = MessageDispatcher(channel_for)
    total: Counter[str] = Counter()
    while counts := dispatcher.process_queue(batch_size=batch_size):
        total += counts
    return total


def test_a_text_twilio_refused_with_a_5xx_goes_out_again_once_twilio_shows_it_never_took_it(
    store: Any, twilio: FakeTwilio, clock: Any
) -> None:
    (contact,) = texts(store, twilio, 1)
    twilio.faults.update({"fail_next": 1, "fail_next_status": 500})
    assert drain() == Counter({"unknown": 1})  # a 5xx may hide an accepted text: not resent blindly
    assert twilio.sent_count(contact.phone) == 0
    message = Message.objects.get()
    assert message.status == "unknown"

    # Within the grace the send may still be in progress at Twilio: nothing is asked or changed.
    assert settle_unknown_sends(channel_for) == Counter()
    assert Message.objects.get().status == "unknown"

    clock.shift(LATER)
    assert settle_unknown_sends(channel_for) == Counter({"requeued": 1})
    message.refresh_from_db()
    assert (message.status, message.reason, message.claimed_until) == ("queued", REQUEUED_REASON, None)
    assert drain() == Counter({"sent": 1})
    assert twilio.sent_count(contact.phone) == 1
    message.refresh_from_db()
    assert message.status == "sent"
    assert [m.sid for m in twilio.messages] == [message.provider_message_id]
    assert settle_unknown_sends(channel_for) == Counter()  # nothing left to settle


def test_a_text_twilio_took_but_whose_answer_was_lost_is_settled_as_sent_and_never_resent(
    store: Any, twilio: FakeTwilio, clock: Any
) -> None:
    (contact,) = texts(store, twilio, 1)
    twilio.faults.update({"accept_then_drop": 1})
    assert drain() == Counter({"unknown": 1})
    assert twilio.sent_count(contact.phone) == 1
    message = Message.objects.get()
    assert message.provider_message_id == ""

    clock.shift(LATER)
    assert settle_unknown_sends(channel_for) == Counter({"sent": 1})
    message.refresh_from_db()
    assert (message.status, message.reason, message.provider_message_id) == (
        "sent", SETTLED_REASON, twilio.messages[0].sid
    )  # fmt: skip
    assert message.sent_at is not None
    assert drain() == Counter()
    assert twilio.sent_count(contact.phone) == 1


def test_a_sid_another_message_of_ours_holds_is_not_taken_for_the_unknown_one(
    store: Any, twilio: FakeTwilio, clock: Any
) -> None:
    (contact,) = texts(store, twilio, 1)
    assert drain() == Counter({"sent": 1})
    first = Message.objects.get()
    # A second text to the same number, a minute later, fails with a 5xx Twilio never processed.
    clock.shift(dt.timedelta(minutes=1))
    version = TemplateRepository().get_template(store, "cod", "sms")
    second = MessageDispatcher(channel_for).queue_message(store=store, contact=contact, channel="sms",
                                                             purpose="transactional", template=version,
                                                             dedupe_key="cod-again")  # fmt: skip
    twilio.faults.update({"fail_next": 1, "fail_next_status": 503})
    assert drain() == Counter({"unknown": 1})

    clock.shift(LATER)
    # Twilio lists one text to that number since the attempt (with the clock's slack): the first's.
    assert settle_unknown_sends(channel_for) == Counter({"requeued": 1})
    assert Message.objects.get(pk=second.pk).status == "queued"
    assert drain() == Counter({"sent": 1})
    assert twilio.sent_count(contact.phone) == 2
    assert len({first.provider_message_id, Message.objects.get(pk=second.pk).provider_message_id}) == 2


class _Unreachable:
    """A channel whose provider cannot be asked."""

    name = "sms"

    def accepted_since(self, to: str, since: dt.datetime) -> list[tuple[str, dt.datetime | None]]:
        raise ConnectionError("Twilio is down")


def test_what_cannot_be_asked_or_is_too_old_or_is_not_a_text_stays_unknown(
    store: Any, twilio: FakeTwilio, clock: Any
) -> None:
    texts(store, twilio, 3)
    twilio.faults.update({"fail_next": 1, "fail_next_status": 502})
    assert drain(batch_size=1) == Counter({"unknown": 1, "sent": 2})
    clock.shift(LATER)
    unreachable = settle_unknown_sends(lambda store, channel: _Unreachable())  # type: ignore[arg-type,return-value]
    assert unreachable == Counter({"unsettled": 1})
    assert Message.objects.filter(status="unknown").count() == 1

    clock.shift(dt.timedelta(days=3))  # past the horizon: history, not resent
    assert settle_unknown_sends(channel_for) == Counter()
    assert Message.objects.filter(status="unknown").count() == 1
    assert len(twilio.messages) == 2


def test_unknown_e_mails_are_left_alone(store: Any, clock: Any) -> None:
    with FakeSmtpServer() as smtp:
        connect_smtp(store_id=store.pk, host=smtp.host, port=smtp.port, security="none",
                     from_addr="shop@shop.example", messages_per_second=500)  # fmt: skip
        repo = TemplateRepository()
        version = repo.save_template(store, "receipt", "email", subject="Receipt", body_text="Thanks!")
        repo.publish(version)
        contact = Contact.objects.create(store=store, email="customer@example.com")
        pk = MessageDispatcher(channel_for).queue_message(store=store, contact=contact, channel="email",
                                                          purpose="transactional", template=version,
                                                          dedupe_key="receipt").pk  # fmt: skip
        Message.objects.filter(pk=pk).update(status="unknown", attempted_at=NOON)
        clock.shift(LATER)
        assert settle_unknown_sends(channel_for) == Counter()  # an SMTP relay has nothing to ask
        assert Message.objects.get(pk=pk).status == "unknown"


class DyingSms:
    """A worker killed mid-batch: the first two texts reach Twilio, then the process dies."""

    def __init__(self, inner: ChannelInterface) -> None:
        self.inner = inner
        self.name = inner.name

    def validate_message(self, envelope: Envelope) -> str | None:
        return self.inner.validate_message(envelope)

    def send_message(self, envelopes: list[Envelope]) -> list[SendResult]:
        self.inner.send_message(envelopes[:2])
        raise KeyboardInterrupt("worker killed mid-batch")

    def test_connection(self) -> None:
        self.inner.test_connection()


def test_after_a_worker_dies_mid_batch_every_recipient_gets_exactly_one_text(
    store: Any, twilio: FakeTwilio, clock: Any
) -> None:
    contacts = texts(store, twilio, 6)
    dying = MessageDispatcher(lambda s, c: DyingSms(channel_for(s, c)), concurrency=1)
    with pytest.raises(KeyboardInterrupt):
        dying.process_queue(batch_size=6)
    assert Message.objects.filter(status="sending").count() == 6
    assert len(twilio.messages) == 2

    clock.shift(dt.timedelta(minutes=11))  # the claim ran out long ago: the worker is gone
    assert reap_stuck_sends() == 6
    assert settle_unknown_sends(channel_for) == Counter({"sent": 2, "requeued": 4})
    assert drain() == Counter({"sent": 4})
    assert [twilio.sent_count(c.phone) for c in contacts] == [1] * 6
    assert twilio.duplicates() == []
    rows = Message.objects.all()
    assert {m.status for m in rows} == {"sent"}
    assert sorted(m.provider_message_id for m in rows) == sorted(m.sid for m in twilio.messages)


def test_a_store_without_an_sms_connection_is_not_asked(store: Any, clock: Any) -> None:
    contact = Contact.objects.create(store=store, phone="+4915112345601")
    other = Store.objects.create(name="Other", url="https://other.example")
    Message.objects.create(store=other, contact=Contact.objects.create(store=other, phone="+4915112345602"),
                           channel="sms", purpose="transactional", dedupe_key="x", status="unknown",
                           not_before=NOON, attempted_at=NOON)  # fmt: skip
    Message.objects.create(store=store, contact=contact, channel="sms", purpose="transactional", dedupe_key="y",
                           status="unknown", not_before=NOON, attempted_at=NOON)  # fmt: skip
    clock.shift(LATER)
    assert settle_unknown_sends(channel_for) == Counter({"unsettled": 2})
    assert set(Message.objects.values_list("status", flat=True)) == {"unknown"}
