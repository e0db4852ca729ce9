"""The generic e-mail events webhook: bounces, complaints and deliveries, signed per connection."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import time_machine
from django.db import connection as db
from django.test import Client
from django_tasks_db.models import DBTaskResult
from tests.drain import drain

from storeloop.consent.models import ConsentEvent, ConsentState, Suppression
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.core.errors import ValidationError
from storeloop.inbox.models import InboxDelivery
from storeloop.inbox.services import process_delivery, replay_delivery
from storeloop.integrations.smtp.bounces import sign
from storeloop.integrations.smtp.fake import FakeSmtpServer
from storeloop.messaging.channels.connections import connect_smtp, connect_twilio
from storeloop.messaging.channels.factory import channel_for, close_channels, credentials_of
from storeloop.messaging.dispatcher import MessageDispatcher
from storeloop.messaging.models import Message, MessagingConnection
from storeloop.messaging.templates import TemplateRepository

pytestmark = pytest.mark.django_db
SECRET = "whsec-mail-events-1234"
ANN = "ann@example.com"
NOON = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _fresh_channels() -> Iterator[None]:
    yield
    close_channels()


@pytest.fixture
def connection(store: Any) -> MessagingConnection:
    return connect_smtp(store_id=store.pk, host="smtp.example.com", from_addr="shop@shop.example",
                        webhook_secret=SECRET)  # fmt: skip


@pytest.fixture
def ann(store: Any) -> Contact:
    return Contact.objects.create(store=store, email=ANN, first_name="Ann")


def events(*items: dict[str, Any]) -> bytes:
    return orjson.dumps({"events": list(items)})


def event(kind: str, *, recipient: str = ANN, message_id: str | None = None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"type": kind, "recipient": recipient, "timestamp": "2026-06-01T12:05:00Z", **extra}
    if message_id is not None:
        item["message_id"] = message_id
    return item


def post(store: Any, body: bytes, *, secret: str = SECRET, signature: str | None = "") -> Any:
    headers = {} if signature is None else {"X-Storeloop-Signature": signature or sign(secret, body)}
    return Client().post(f"/webhooks/email/{store.pk}", body, content_type="application/json", headers=headers)


def sent_message(store: Any, contact: Contact, n: int = 1, **fields: Any) -> Message:
    values: dict[str, Any] = {"status": Message.Status.SENT, "sent_at": NOON, **fields}
    message = Message.objects.create(store=store, contact=contact, channel="email", purpose="marketing",
                                     dedupe_key=f"m-{n}", not_before=NOON, **values)  # fmt: skip
    if not message.provider_message_id:
        message.provider_message_id = f"<sl-{message.idempotency_key}@shop.example>"
        message.save(update_fields=["provider_message_id"])
    return message


def process_received() -> list[str]:
    rows = InboxDelivery.objects.filter(status=InboxDelivery.Status.RECEIVED).order_by("id")
    return [process_delivery(row.pk) for row in rows]


def nothing_written() -> None:
    assert InboxDelivery.objects.count() == 0
    assert DBTaskResult.objects.count() == 0


def suppressions(store: Any) -> list[tuple[str, str, str]]:
    return list(Suppression.objects.filter(store=store).values_list("channel", "address", "reason"))


# --- the receiver ----------------------------------------------------------------------------------


def test_signed_events_are_stored_once_and_queued_by_id(store: Any, connection: MessagingConnection) -> None:
    body = events(event("bounce", bounce_type="hard"))
    response = post(store, body)
    assert response.status_code == 200
    row = InboxDelivery.objects.get()
    assert response.json() == {"status": "accepted", "delivery": row.pk}
    assert (row.source, row.topic, row.delivery_id, bytes(row.body)) == ("email", "events", row.body_hash, body)
    assert DBTaskResult.objects.get().args_kwargs == {"args": [str(row.pk)], "kwargs": {}}
    assert post(store, body).json() == {"status": "duplicate", "delivery": None}
    assert InboxDelivery.objects.count() == 1


@pytest.mark.parametrize("case", ["missing", "wrong secret", "tampered", "bare hex"])
def test_a_bad_signature_is_refused_and_nothing_is_written(
    store: Any, connection: MessagingConnection, ann: Contact, case: str
) -> None:
    body = events(event("complaint"))
    if case == "missing":
        response = post(store, body, signature=None)
    elif case == "wrong secret":
        response = post(store, body, secret="another-secret-entirely")
    elif case == "tampered":
        response = post(store, body.replace(b"ann@", b"bob@"), signature=sign(SECRET, body))
    else:
        response = post(store, body, signature=sign(SECRET, body)[7:])
    assert (response.status_code, response.json()["code"]) == (401, "invalid_signature")
    nothing_written()


def test_without_a_webhook_secret_nothing_is_accepted(store: Any) -> None:
    connect_smtp(store_id=store.pk, host="smtp.example.com", from_addr="shop@shop.example")
    response = post(store, events(event("complaint")), secret="")
    assert (response.status_code, response.json()["code"]) == (401, "webhook_not_configured")
    assert "webhook_secret" in response.json()["message"]
    nothing_written()


def test_unknown_store_or_channel_is_not_found(store: Any, other_store: Any) -> None:
    assert post(store, events(), secret="x").json()["code"] == "channel_not_configured"
    connect_twilio(store_id=other_store.pk, account_sid="AC" + "1" * 32, auth_token="t", from_number="+15005550006")
    assert post(other_store, events(), secret="x").status_code == 404
    response = Client().post("/webhooks/email/999999", events(), content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (404, "store_not_found")
    nothing_written()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (events(event("bounce")), "events[0].bounce_type"),
        (events(event("complaint"), event("unsubscribe")), "events[1].type"),
        (events(event("delivered", recipient="ann@localhost")), "events[0].recipient"),
        (events({"type": "delivered", "recipient": ANN}), "events[0].timestamp"),
        (orjson.dumps([event("complaint")]), None),
        (b"{not json", None),
    ],
)
def test_a_signed_body_of_the_wrong_shape_says_what_to_fix(
    store: Any, connection: MessagingConnection, body: bytes, field: str | None
) -> None:
    response = post(store, body)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_payload")
    assert response.json()["details"] == ([{"field": field}] if field else None)
    if field:
        assert response.json()["message"].startswith(f"{field}: ")
    nothing_written()


# --- processing ------------------------------------------------------------------------------------


def test_a_hard_bounce_suppresses_the_address_and_fails_the_message(
    store: Any, connection: MessagingConnection, ann: Contact
) -> None:
    message = sent_message(store, ann)
    post(store, events(event("bounce", bounce_type="hard", message_id=message.provider_message_id,
                             reason="550 5.1.1 user unknown")))  # fmt: skip
    assert process_received() == ["hard_bounce (suppressed): 1"]
    assert suppressions(store) == [("email", ANN, "hard_bounce")]
    assert Suppression.objects.get().detail == "550 5.1.1 user unknown"
    message.refresh_from_db()
    assert (message.status, message.last_error) == ("failed", "hard bounce: 550 5.1.1 user unknown")
    gate = MessagingConsentManager()
    assert gate.has_consent(ann, "email", "transactional").reason == "suppressed:hard_bounce"


def test_a_soft_bounce_is_recorded_only(store: Any, connection: MessagingConnection, ann: Contact) -> None:
    message = sent_message(store, ann)
    key = message.provider_message_id.strip("<>")  # brackets are optional
    post(store, events(event("bounce", bounce_type="soft", message_id=key, reason="452 4.2.2 mailbox full")))
    assert process_received() == ["soft bounce: 1"]
    assert suppressions(store) == []
    message.refresh_from_db()
    assert (message.status, message.last_error) == ("sent", "soft bounce: 452 4.2.2 mailbox full")


def test_a_complaint_suppresses_and_withdraws_marketing_consent_once(
    store: Any, connection: MessagingConnection, ann: Contact
) -> None:
    gate = MessagingConsentManager()
    gate.grant_consent(ann, "email", "marketing", source="checkout")
    gate.grant_consent(ann, "sms", "marketing", source="checkout")
    message = sent_message(store, ann)
    post(store, events(event("complaint", message_id=message.provider_message_id, reason="abuse")))
    assert process_received() == ["complaint (suppressed): 1, consent withdrawn: 1"]
    assert suppressions(store) == [("email", ANN, "complaint")]
    states = dict(ConsentState.objects.filter(contact=ann).values_list("channel", "status"))
    assert states == {"email": "withdrawn", "sms": "granted"}
    assert ConsentEvent.objects.filter(action="withdraw").get().source == "complaint"
    message.refresh_from_db()
    assert message.status == "sent"  # it was delivered; the complaint is about what it said

    replay_delivery(store=store, delivery_pk=InboxDelivery.objects.get().pk)
    assert process_received() == ["complaint (already suppressed): 1"]
    assert ConsentEvent.objects.filter(action="withdraw").count() == 1


def test_delivered_moves_the_message_by_our_message_id_or_the_providers(
    store: Any, connection: MessagingConnection, ann: Contact
) -> None:
    ours = sent_message(store, ann, 1)
    relayed = sent_message(store, ann, 2, provider_message_id="0100018f-relay-id")
    post(store, events(event("delivered", message_id=f"sl-{ours.idempotency_key}@other-domain.example"),
                       event("delivered", message_id="0100018f-relay-id"),
                       event("delivered", message_id="<nobody@shop.example>")))  # fmt: skip
    assert process_received() == ["no such message: 1, sent->delivered: 2"]
    for message in (ours, relayed):
        message.refresh_from_db()
        assert (message.status, message.delivered_at) == ("delivered", NOON + dt.timedelta(minutes=5))


def test_a_hard_bounce_after_delivery_suppresses_but_keeps_delivered(
    store: Any, connection: MessagingConnection, ann: Contact
) -> None:
    message = sent_message(store, ann, status=Message.Status.DELIVERED)
    post(store, events(event("bounce", bounce_type="hard", message_id=message.provider_message_id)))
    process_received()
    message.refresh_from_db()
    assert message.status == "delivered"
    assert suppressions(store) == [("email", ANN, "hard_bounce")]


def test_events_concern_only_the_store_they_were_sent_to(
    store: Any, other_store: Any, connection: MessagingConnection, ann: Contact
) -> None:
    theirs = Contact.objects.create(store=other_store, email=ANN)
    MessagingConsentManager().grant_consent(theirs, "email", "marketing", source="checkout")
    their_message = sent_message(other_store, theirs)
    post(store, events(event("complaint", message_id=their_message.provider_message_id)))
    process_received()
    assert suppressions(other_store) == []
    assert dict(ConsentState.objects.filter(contact=theirs).values_list("purpose", "status")) == {
        "marketing": "granted"
    }
    their_message.refresh_from_db()
    assert their_message.status == "sent"


# --- end to end ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_bounce_for_a_sent_mail_stops_the_next_one(store: Any) -> None:
    repo = TemplateRepository()
    version = repo.save_template(store, "receipt", "email", subject="Order", body_text="Thanks")
    repo.publish(version)
    ann = Contact.objects.create(store=store, email=ANN, first_name="Ann")
    dispatcher = MessageDispatcher(channel_for)
    with FakeSmtpServer() as smtp, time_machine.travel(NOON, tick=True):
        connect_smtp(store_id=store.pk, host=smtp.host, port=smtp.port, security="none",
                     from_addr="shop@shop.example", webhook_secret=SECRET)  # fmt: skip
        smtp.disconnect_next, smtp.disconnect_after_accept = 1, True  # the relay took it, we could not tell
        dispatcher.queue_message(store=store, contact=ann, channel="email", purpose="transactional",
                                 template=version, dedupe_key="order-1")  # fmt: skip
        assert dispatcher.process_queue() == Counter({"unknown": 1})
        [message_id] = smtp.message_ids()
        assert message_id is not None
        # The mail provider reports on the message by the Message-ID we gave it.
        post(store, events(event("delivered", message_id=message_id)))
        post(store, events(event("bounce", bounce_type="hard", recipient="ANN@Example.com", message_id=message_id)))
        drain()
        dispatcher.queue_message(store=store, contact=ann, channel="email", purpose="transactional",
                                 template=version, dedupe_key="order-2")  # fmt: skip
        assert dispatcher.process_queue() == Counter({"suppressed": 1})
        assert len(smtp.messages) == 1
    first = Message.objects.get(dedupe_key="order-1")
    assert (first.status, first.provider_message_id) == ("delivered", message_id)
    assert suppressions(store) == [("email", ANN, "hard_bounce")]


def test_the_webhook_secret_is_kept_encrypted_and_checked(store: Any, connection: MessagingConnection) -> None:
    assert credentials_of(MessagingConnection.objects.get()) == {"webhook_secret": SECRET}
    with db.cursor() as cursor:
        cursor.execute("SELECT credentials FROM messaging_messagingconnection WHERE id = %s", [connection.pk])
        assert SECRET not in cursor.fetchone()[0]
    with pytest.raises(ValidationError) as info:
        connect_smtp(store_id=store.pk, host="smtp.example.com", from_addr="shop@shop.example", webhook_secret="short")
    assert (info.value.code, info.value.details) == ("invalid_secret", [{"field": "webhook_secret"}])
    assert credentials_of(MessagingConnection.objects.get()) == {"webhook_secret": SECRET}  # unchanged
