"""The dispatcher with the real channel factory against the fake SMTP relay and the fake Twilio.

What a shop sees end to end: every recipient gets each message exactly once, marketing mail carries
a one-click unsubscribe link that works, suppressed addresses get nothing, and a worker that dies
in the middle of a batch never causes a second copy.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine
from django.test import Client

from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.integrations.smtp.fake import FakeSmtpServer
from storeloop.integrations.twilio.fake import FakeTwilio
from storeloop.messaging.channels.base import ChannelInterface, Envelope, SendResult
from storeloop.messaging.channels.connections import connect_smtp, connect_twilio
from storeloop.messaging.channels.factory import channel_for, close_channels
from storeloop.messaging.dispatcher import MessageDispatcher, reap_stuck_sends
from storeloop.messaging.models import Message
from storeloop.messaging.templates import TemplateRepository

pytestmark = pytest.mark.django_db(transaction=True)  # the dispatcher builds channels in worker threads
NOON = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)  # 14:00 in Berlin: outside SMS quiet hours
CONTACTS = 30
SUPPRESSED = {"email": {5, 10}, "sms": {7}}


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as fake:
        yield fake


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio(seed=11) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _setup(settings: Any) -> Iterator[None]:
    settings.PUBLIC_URL = "https://loop.example"
    yield
    close_channels()


def drain(dispatcher: MessageDispatcher, batch_size: int) -> Counter[str]:
    """``process_queue`` until a batch finds nothing due; the summed counts."""
    total: Counter[str] = Counter()
    for _ in range(100):
        counts = dispatcher.process_queue(batch_size=batch_size)
        if not counts:
            return total
        total += counts
    raise AssertionError(f"the queue did not drain: {total}")


def published(store: Any, key: str, channel: str, **fields: str) -> Any:
    repo = TemplateRepository()
    version = repo.save_template(store, key, channel, **fields)
    repo.publish(version)
    return version


def test_every_recipient_gets_each_message_exactly_once(store: Any, smtp: FakeSmtpServer, twilio: FakeTwilio) -> None:
    gate = MessagingConsentManager()
    dispatcher = MessageDispatcher(channel_for)
    with time_machine.travel(NOON, tick=True):
        connect_smtp(store_id=store.pk, host=smtp.host, port=smtp.port, security="none",
                     from_addr="shop@shop.example", from_name="Test shop", messages_per_second=500)  # fmt: skip
        connect_twilio(store_id=store.pk, account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                       from_number=twilio.from_number, base_url=twilio.url, messages_per_second=500)  # fmt: skip
        receipt = published(store, "receipt", "email", subject="Your receipt, {{ contact.first_name }}",
                            body_text="Thanks!", body_html="<p>Thanks!</p>")  # fmt: skip
        news = published(store, "news", "email", subject="Spring news", body_text="New in: {{ store.name }}")
        cod = published(store, "cod", "sms", body_text="{{ contact.first_name }}, your parcel arrives today")
        sale = published(store, "sale", "sms", body_text="{{ contact.first_name }}: 20% off this week")
        contacts = {}
        for i in range(1, CONTACTS + 1):
            contact = Contact.objects.create(store=store, email=f"customer{i:02}@example.com",
                                             phone=f"+49151123456{i:02}", first_name=f"C{i}", country="DE")  # fmt: skip
            contacts[i] = contact
            if i % 3:
                gate.grant_consent(contact, "email", "marketing", source="checkout")
            if i % 2 == 0:
                gate.grant_consent(contact, "sms", "marketing", source="checkout")
            for channel, numbers in SUPPRESSED.items():
                if i in numbers:
                    address = contact.email if channel == "email" else contact.phone
                    gate.suppress(store.pk, channel, address, "complaint")
            for channel, purpose, version, key in [("email", "transactional", receipt, "receipt"),
                                                   ("email", "marketing", news, "news"),
                                                   ("sms", "transactional", cod, "cod"),
                                                   ("sms", "marketing", sale, "sale")]:  # fmt: skip
                dispatcher.queue_message(store=store, contact=contact, channel=channel, purpose=purpose,
                                         template=version, dedupe_key=f"{key}-{i}")  # fmt: skip
        totals = drain(dispatcher, batch_size=25)

    def expected(channel: str, purpose: str) -> set[int]:
        wanted = {i for i in contacts if purpose == "transactional" or (i % 3 if channel == "email" else i % 2 == 0)}
        return wanted - SUPPRESSED[channel]

    sent = sum(len(expected(c, p)) for c in ("email", "sms") for p in ("transactional", "marketing"))
    assert totals == Counter({"sent": sent, "suppressed": 4 * CONTACTS - sent})
    assert set(Message.objects.values_list("status", flat=True)) == {"sent", "suppressed"}
    # Each attempt names the provider of the store's connection; suppressed messages had none.
    assert set(Message.objects.values_list("channel", "status", "provider")) == {
        ("email", "sent", "smtp"), ("sms", "sent", "twilio"), ("email", "suppressed", ""), ("sms", "suppressed", ""),
    }  # fmt: skip

    # E-mail: one copy per Message-ID, each the one the row recorded, over the channel's pooled
    # sessions (two by default), reused from batch to batch rather than one per message or batch.
    assert set(smtp.count_by_message_id().values()) == {1}
    rows = Message.objects.filter(channel="email", status="sent")
    assert sorted(smtp.message_ids()) == sorted(rows.values_list("provider_message_id", flat=True))  # type: ignore[arg-type]
    by_recipient = Counter(m.rcpt_tos[0] for m in smtp.messages)
    for i in contacts:
        want = (i in expected("email", "transactional")) + (i in expected("email", "marketing"))
        assert by_recipient[f"customer{i:02}@example.com"] == want
    assert 1 <= smtp.connections <= 2

    # SMS: one message per recipient and text; suppressed numbers got nothing.
    assert twilio.duplicates() == []
    for i, contact in contacts.items():
        want = (i in expected("sms", "transactional")) + (i in expected("sms", "marketing"))
        assert twilio.sent_count(contact.phone) == want

    # Marketing mail carries RFC 8058 one-click unsubscribe with a working https link; receipts do not.
    marketing = [m for m in smtp.messages if m.message["Subject"] == "Spring news"]
    assert len(marketing) == len(expected("email", "marketing"))
    for received in smtp.messages:
        header = received.message["List-Unsubscribe"]
        assert (header is not None) == (received in marketing)
    first = marketing[0]
    link = str(first.message["List-Unsubscribe"]).strip("<>")
    assert link.startswith("https://loop.example/u/")
    assert first.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with time_machine.travel(NOON + dt.timedelta(hours=1), tick=True):  # the link is signed and expires
        response = Client().post(urlsplit(link).path, {"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200
        contact = Contact.objects.get(store=store, email=first.rcpt_tos[0])
        assert gate.has_consent(contact, "email", "marketing").reason == "withdrawn"


class DyingChannel:
    """A worker killed mid-batch: the first message reaches the relay, then the process dies."""

    def __init__(self, inner: ChannelInterface, fake: FakeSmtpServer) -> None:
        self.inner = inner
        self.fake = fake
        self.name = inner.name

    def validate_message(self, envelope: Envelope) -> str | None:
        return self.inner.validate_message(envelope)

    def send_message(self, envelopes: list[Envelope]) -> list[SendResult]:
        self.inner.send_message(envelopes[:1])
        self.fake.wait_for_messages(1)  # the relay has it (a condition, not a sleep)
        raise KeyboardInterrupt("worker killed mid-batch")

    def test_connection(self) -> None:
        self.inner.test_connection()


def test_a_worker_dying_mid_batch_never_causes_a_second_copy(store: Any, smtp: FakeSmtpServer) -> None:
    with time_machine.travel(NOON, tick=True) as clock:
        connect_smtp(store_id=store.pk, host=smtp.host, port=smtp.port, security="none",
                     from_addr="shop@shop.example", messages_per_second=500)  # fmt: skip
        receipt = published(store, "receipt", "email", subject="Your receipt", body_text="Thanks!")
        healthy = MessageDispatcher(channel_for)
        for i in range(10):
            contact = Contact.objects.create(store=store, email=f"customer{i:02}@example.com", first_name=f"C{i}")
            healthy.queue_message(store=store, contact=contact, channel="email", purpose="transactional",
                                  template=receipt, dedupe_key=f"receipt-{i}")  # fmt: skip
        # One sending thread: the batch goes out in one sequence that the death cuts after its first message.
        dying = MessageDispatcher(lambda s, c: DyingChannel(channel_for(s, c), smtp), concurrency=1)
        with pytest.raises(KeyboardInterrupt):
            dying.process_queue(batch_size=4)
        batch = set(Message.objects.filter(status="sending").values_list("pk", flat=True))
        assert len(batch) == 4
        assert len(smtp.messages) == 1

        # Before the claim runs out, another worker leaves the batch alone and sends the rest.
        assert drain(healthy, batch_size=4) == Counter({"sent": 6})
        clock.shift(dt.timedelta(minutes=11))
        assert reap_stuck_sends() == 4
        assert drain(healthy, batch_size=4) == Counter()

    statuses = dict(Message.objects.values_list("pk", "status"))
    assert {pk for pk, status in statuses.items() if status == "unknown"} == batch
    assert set(statuses.values()) == {"unknown", "sent"}
    assert set(smtp.count_by_message_id().values()) == {1}  # nobody got anything twice
    # The price of "never twice": the 3 messages the dead worker had not reached yet are lost (unknown).
    assert len(smtp.messages) == 1 + 6
    unknown_reasons = set(Message.objects.filter(status="unknown").values_list("reason", flat=True))
    assert unknown_reasons == {"worker lost during the provider call"}
