"""The 24-hour customer-service window: free WhatsApp text only within 24 h of the customer's last message."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from storeloop.contacts.models import Contact
from storeloop.messaging.channels.base import Envelope, Outcome, SendResult
from storeloop.messaging.dispatcher import MessageDispatcher
from storeloop.messaging.inbound.window import is_window_open, last_inbound_times, record_inbound
from storeloop.messaging.models import CustomerServiceWindow
from storeloop.messaging.templates import TemplateRepository

pytestmark = pytest.mark.django_db
NOON = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
ANN = "+4915112345601"


class RecordingChannel:
    """Sends nothing; keeps the envelopes the dispatcher built."""

    name = "whatsapp"

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    def validate_message(self, envelope: Envelope) -> str | None:
        return None

    def send_message(self, envelopes: list[Envelope]) -> list[SendResult]:
        self.envelopes.extend(envelopes)
        return [SendResult(e.message_id, Outcome.SENT, provider_message_id=f"wamid.{e.message_id}") for e in envelopes]

    def test_connection(self) -> None:
        return None


@pytest.fixture
def channel() -> RecordingChannel:
    return RecordingChannel()


@pytest.fixture
def dispatcher(channel: RecordingChannel) -> MessageDispatcher:
    return MessageDispatcher(lambda store, name: channel)


@pytest.fixture
def ann(store: Any) -> Contact:
    return Contact.objects.create(store=store, phone=ANN, first_name="Ann", country="DE")


@pytest.fixture
def version(store: Any) -> Any:
    repo = TemplateRepository()
    saved = repo.save_template(store, "shipped", "whatsapp", body_text="It shipped", wa_template_name="order_update",
                               wa_language="en_US")  # fmt: skip
    repo.publish(saved)
    return saved


def window_when_sent(dispatcher: MessageDispatcher, channel: RecordingChannel, store: Any, contact: Contact,
                     version: Any, at: dt.datetime) -> bool:  # fmt: skip
    """Queue and send one WhatsApp receipt at ``at``; whether the dispatcher said the window was open."""
    with time_machine.travel(at, tick=False):
        dispatcher.queue_message(store=store, contact=contact, channel="whatsapp", purpose="transactional",
                                 template=version, dedupe_key=f"shipped-{contact.pk}-{at.isoformat()}")  # fmt: skip
        assert dispatcher.process_queue() == Counter({"sent": 1})
    envelope = channel.envelopes[-1]
    assert (envelope.to, envelope.wa_template_name, envelope.wa_language) == (contact.phone, "order_update", "en_US")
    return envelope.window_open


def test_a_customer_who_never_wrote_gets_the_template(
    store: Any, ann: Contact, version: Any, dispatcher: MessageDispatcher, channel: RecordingChannel
) -> None:
    assert window_when_sent(dispatcher, channel, store, ann, version, NOON) is False


@pytest.mark.parametrize(
    ("after", "open_"),
    [(dt.timedelta(0), True), (dt.timedelta(hours=23, minutes=59, seconds=59), True),
     (dt.timedelta(hours=24), False), (dt.timedelta(days=3), False)],
)  # fmt: skip
def test_the_window_is_open_for_24_hours_after_the_customers_last_message(
    store: Any, ann: Contact, version: Any, dispatcher: MessageDispatcher, channel: RecordingChannel,
    after: dt.timedelta, open_: bool,
) -> None:  # fmt: skip
    assert record_inbound(store.pk, ANN, NOON)
    assert window_when_sent(dispatcher, channel, store, ann, version, NOON + after) is open_


def test_a_newer_message_reopens_it_and_an_older_one_does_not_move_it_back(
    store: Any, ann: Contact, version: Any, dispatcher: MessageDispatcher, channel: RecordingChannel
) -> None:
    with time_machine.travel(NOON + dt.timedelta(days=2), tick=False):
        assert record_inbound(store.pk, ANN, NOON)
        assert record_inbound(store.pk, ANN, NOON + dt.timedelta(days=1, hours=12))
        assert not record_inbound(store.pk, ANN, NOON + dt.timedelta(hours=1))  # delivered late
    assert last_inbound_times(store.pk, [ANN]) == {ANN: NOON + dt.timedelta(days=1, hours=12)}
    assert window_when_sent(dispatcher, channel, store, ann, version, NOON + dt.timedelta(days=2)) is True
    assert window_when_sent(dispatcher, channel, store, ann, version, NOON + dt.timedelta(days=2, hours=12)) is False


def test_someone_elses_message_opens_nothing(
    store: Any, other_store: Any, ann: Contact, version: Any, dispatcher: MessageDispatcher, channel: RecordingChannel
) -> None:
    record_inbound(store.pk, "+4915112345602", NOON)  # Bob, same shop
    record_inbound(other_store.pk, ANN, NOON)  # Ann, but to another shop
    assert window_when_sent(dispatcher, channel, store, ann, version, NOON + dt.timedelta(hours=1)) is False
    assert CustomerServiceWindow.objects.count() == 2


def test_a_future_timestamp_counts_as_now(store: Any) -> None:
    with time_machine.travel(NOON, tick=False):
        record_inbound(store.pk, ANN, NOON + dt.timedelta(days=5))
    [row] = CustomerServiceWindow.objects.all()
    assert row.last_inbound_at == NOON
    assert is_window_open(row.last_inbound_at, NOON + dt.timedelta(hours=24)) is False


def test_the_window_is_looked_up_once_per_batch(
    store: Any, version: Any, dispatcher: MessageDispatcher, channel: RecordingChannel
) -> None:
    contacts = [Contact.objects.create(store=store, phone=f"+49151123456{i:02}", country="DE") for i in range(10)]
    for contact in contacts[::2]:
        record_inbound(store.pk, contact.phone, NOON)
    with time_machine.travel(NOON + dt.timedelta(hours=1), tick=False):
        for contact in contacts:
            dispatcher.queue_message(store=store, contact=contact, channel="whatsapp", purpose="transactional",
                                     template=version, dedupe_key=f"shipped-{contact.pk}")  # fmt: skip
        with CaptureQueriesContext(connection) as queries:
            assert dispatcher.process_queue() == Counter({"sent": 10})
    window_reads = [q for q in queries.captured_queries if "customerservicewindow" in q["sql"]]
    assert len(window_reads) == 1
    opened = {e.to for e in channel.envelopes if e.window_open}
    assert opened == {c.phone for c in contacts[::2]}
