"""WhatsApp Cloud webhooks: the verification handshake, signed notifications, statuses and inbound messages.

Payloads are built with the fake's own builders (Meta's shape) and signed like Meta; end to end, the
fake WhatsApp posts real signed webhooks to a live server.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.db import connection as db
from django.test import Client
from django_tasks_db.models import DBTaskResult
from tests.drain import drain

from storeloop.consent.models import ConsentEvent, ConsentState
from storeloop.contacts.models import Contact
from storeloop.core.errors import ValidationError
from storeloop.inbox.models import InboxDelivery
from storeloop.inbox.services import process_delivery, replay_delivery
from storeloop.integrations.whatsapp.fake import FakeWhatsApp
from storeloop.integrations.whatsapp.fake.webhooks import GraphError, envelope, inbound_item, status_item
from storeloop.integrations.whatsapp.signature import sign
from storeloop.messaging.channels.connections import connect_smtp, connect_whatsapp
from storeloop.messaging.channels.factory import channel_for, close_channels, credentials_of
from storeloop.messaging.dispatcher import MessageDispatcher
from storeloop.messaging.inbound.links import whatsapp_webhook_url
from storeloop.messaging.models import CustomerServiceWindow, Message, MessagingConnection
from storeloop.messaging.templates import TemplateRepository

pytestmark = pytest.mark.django_db
APP_SECRET = "0123456789abcdef0123456789abcdef"
VERIFY = "verify-me-please"
PHONE_ID = "1234567890"
ANN = "+4915112345601"
ANN_WA = "4915112345601"
NOON = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _fresh_channels() -> Iterator[None]:
    yield
    close_channels()


@pytest.fixture
def connection(store: Any) -> MessagingConnection:
    return connect_whatsapp(store_id=store.pk, access_token="EAAG-test", phone_number_id=PHONE_ID,
                            app_secret=APP_SECRET, verify_token=VERIFY)  # fmt: skip


@pytest.fixture
def ann(store: Any) -> Contact:
    return Contact.objects.create(store=store, phone=ANN, first_name="Ann", country="DE")


def path(store: Any) -> str:
    return f"/webhooks/whatsapp/{store.pk}"


def body_of(value: dict[str, Any], phone_number_id: str = PHONE_ID) -> bytes:
    # Meta's bytes: compact JSON, non-ASCII escaped; the signature covers exactly these.
    payload = envelope("102290129340398", phone_number_id, "15550001111", value)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def statuses(*items: dict[str, Any]) -> dict[str, Any]:
    return {"statuses": list(items)}


def status(wamid: str, state: str, at: dt.datetime = NOON, *, key: str | None = None, error: int | None = None) -> Any:
    return status_item(wamid, state, ANN_WA, at.timestamp(), category="utility", conversation_id="c1",
                       callback_data=key, error=GraphError(error) if error else None)  # fmt: skip


def inbound(wamid: str, text: str, at: dt.datetime = NOON, sender: str = ANN_WA) -> dict[str, Any]:
    item = inbound_item(wamid, sender, at.timestamp(), text=text, button_payload=None, button_text=None,
                        context_wamid=None)  # fmt: skip
    return {"contacts": [{"profile": {"name": "Ann"}, "wa_id": sender}], "messages": [item]}


def post(store: Any, body: bytes, *, secret: str = APP_SECRET, signature: str | None = "") -> Any:
    headers = {} if signature is None else {"X-Hub-Signature-256": signature or sign(secret, body)}
    return Client().post(path(store), body, content_type="application/json", headers=headers)


def sent_message(store: Any, contact: Contact, wamid: str = "wamid.1", **fields: Any) -> Message:
    values: dict[str, Any] = {"status": Message.Status.SENT, "provider_message_id": wamid, "sent_at": NOON,
                              "purpose": "transactional", "attempts": 1}  # fmt: skip
    values.update(fields)
    return Message.objects.create(store=store, contact=contact, channel="whatsapp", dedupe_key=f"m-{wamid}",
                                  not_before=NOON, **values)  # fmt: skip


def process_received() -> list[str]:
    rows = InboxDelivery.objects.filter(status=InboxDelivery.Status.RECEIVED).order_by("id")
    return [process_delivery(row.pk) for row in rows]


def nothing_written() -> None:
    assert InboxDelivery.objects.count() == 0
    assert DBTaskResult.objects.count() == 0


def window_of(store: Any) -> dict[str, dt.datetime]:
    return dict(CustomerServiceWindow.objects.filter(store=store).values_list("address", "last_inbound_at"))


# --- verification handshake ----------------------------------------------------------------------


def test_the_handshake_echoes_the_challenge(store: Any, connection: MessagingConnection) -> None:
    response = Client().get(path(store), {"hub.mode": "subscribe", "hub.verify_token": VERIFY,
                                          "hub.challenge": "1158201444"})  # fmt: skip
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain"
    assert response.content == b"1158201444"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong-token", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "<script>"},
    ],
)
def test_a_wrong_handshake_is_forbidden(store: Any, connection: MessagingConnection, query: dict[str, str]) -> None:
    response = Client().get(path(store), query)
    assert response.status_code == 403
    assert response.json()["code"] == "verification_failed"
    assert b"<script>" not in response.content


def test_a_connection_without_verify_token_refuses_the_handshake_and_says_why(store: Any) -> None:
    connect_whatsapp(store_id=store.pk, access_token="EAAG-test", phone_number_id=PHONE_ID)
    response = Client().get(path(store), {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"})
    assert response.status_code == 403
    assert "connect it again with verify_token" in response.json()["message"]


def test_unknown_store_or_channel_is_not_found(store: Any, other_store: Any) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1"}
    assert Client().get("/webhooks/whatsapp/999999", query).json()["code"] == "store_not_found"
    connect_smtp(store_id=other_store.pk, host="smtp.example.com", from_addr="shop@other.example")
    response = post(other_store, body_of(statuses(status("wamid.1", "sent"))))
    assert (response.status_code, response.json()["code"]) == (404, "channel_not_configured")
    nothing_written()


# --- signed notifications ------------------------------------------------------------------------


def test_a_signed_notification_is_stored_and_queued_by_id(store: Any, connection: MessagingConnection) -> None:
    body = body_of(statuses(status("wamid.1", "delivered")))
    response = post(store, body)
    assert response.status_code == 200
    row = InboxDelivery.objects.get()
    assert response.json() == {"status": "accepted", "delivery": row.pk}
    assert (row.source, row.topic, row.delivery_id, bytes(row.body)) == ("whatsapp", "messages", "wamid.1:delivered",
                                                                         body)  # fmt: skip
    assert DBTaskResult.objects.get().args_kwargs == {"args": [str(row.pk)], "kwargs": {}}
    assert post(store, body).json() == {"status": "duplicate", "delivery": None}  # Meta's retry
    assert InboxDelivery.objects.count() == 1


def test_a_batch_is_named_by_its_hash_and_other_fields_are_ignored(store: Any, connection: MessagingConnection) -> None:
    batch = body_of(statuses(status("wamid.1", "sent"), status("wamid.2", "sent")))
    post(store, batch)
    review = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "message_template_status_update", "value": {"event": "APPROVED"}}]}]}).encode()  # fmt: skip
    assert post(store, review).json()["status"] == "ignored"
    rows = InboxDelivery.objects.order_by("id")
    assert [(r.topic, r.delivery_id == r.body_hash, r.status) for r in rows] == [
        ("messages", True, "received"), ("message_template_status_update", True, "ignored"),
    ]  # fmt: skip
    assert DBTaskResult.objects.count() == 1  # nothing to do for the ignored one


@pytest.mark.parametrize("case", ["missing", "wrong secret", "tampered", "not sha256"])
def test_a_bad_signature_is_refused_and_nothing_is_written(
    store: Any, connection: MessagingConnection, case: str
) -> None:
    body = body_of(inbound("wamid.9", "STOP"))
    if case == "missing":
        response = post(store, body, signature=None)
    elif case == "wrong secret":
        response = post(store, body, secret="f" * 32)
    elif case == "tampered":
        response = post(store, body.replace(b"STOP", b"START"), signature=sign(APP_SECRET, body))
    else:
        response = post(store, body, signature="sha1=" + sign(APP_SECRET, body)[7:])
    assert (response.status_code, response.json()["code"]) == (401, "invalid_signature")
    nothing_written()
    assert window_of(store) == {}


def test_without_an_app_secret_nothing_is_accepted(store: Any) -> None:
    connect_whatsapp(store_id=store.pk, access_token="EAAG-test", phone_number_id=PHONE_ID)
    body = body_of(inbound("wamid.9", "hi"))
    response = post(store, body, secret="")
    assert (response.status_code, response.json()["code"]) == (401, "webhook_not_configured")
    assert "app_secret" in response.json()["message"]
    nothing_written()


@pytest.mark.parametrize(
    ("body", "problem"),
    [(b"{not json", "not valid JSON"), (json.dumps({"object": "page", "entry": []}).encode(), "$.object")],
)
def test_a_signed_body_of_the_wrong_shape_is_refused(
    store: Any, connection: MessagingConnection, body: bytes, problem: str
) -> None:
    response = post(store, body)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_payload")
    assert problem in response.json()["message"]
    nothing_written()


# --- statuses --------------------------------------------------------------------------------------


def test_statuses_move_messages_forward_only(store: Any, connection: MessagingConnection, ann: Contact) -> None:
    message = sent_message(store, ann)
    later = NOON + dt.timedelta(minutes=2)
    post(store, body_of(statuses(status("wamid.1", "read", later))))
    post(store, body_of(statuses(status("wamid.1", "delivered", NOON + dt.timedelta(minutes=1)))))
    post(store, body_of(statuses(status("wamid.1", "sent"))))
    assert process_received() == ["sent->read: 1", "stale delivered (read): 1", "stale sent (read): 1"]
    message.refresh_from_db()
    assert (message.status, message.read_at, message.delivered_at) == ("read", later, later)


def test_a_failed_status_records_the_error(store: Any, connection: MessagingConnection, ann: Contact) -> None:
    message = sent_message(store, ann)
    post(store, body_of(statuses(status("wamid.1", "failed", error=131026))))
    assert process_received() == ["sent->failed: 1"]
    message.refresh_from_db()
    assert (message.status, message.last_error) == ("failed", "WhatsApp error 131026: Message Undeliverable")
    assert ConsentEvent.objects.count() == 0


@pytest.mark.parametrize(("purpose", "withdrawn"), [("marketing", {"marketing": "withdrawn"}), ("transactional", {})])
def test_a_marketing_opt_out_withdraws_marketing_consent_only(
    store: Any, connection: MessagingConnection, ann: Contact, purpose: str, withdrawn: dict[str, str]
) -> None:
    sent_message(store, ann, purpose=purpose)
    post(store, body_of(statuses(status("wamid.1", "failed", error=131050))))
    process_received()
    assert dict(ConsentState.objects.filter(contact=ann).values_list("purpose", "status")) == withdrawn
    replay_delivery(store=store, delivery_pk=InboxDelivery.objects.get().pk)
    process_received()
    assert ConsentEvent.objects.filter(contact=ann).count() == len(withdrawn)


def test_our_callback_data_names_a_message_whose_send_answer_was_lost(
    store: Any, connection: MessagingConnection, ann: Contact
) -> None:
    message = sent_message(store, ann, status=Message.Status.UNKNOWN, provider_message_id="", sent_at=None)
    post(store, body_of(statuses(status("wamid.77", "delivered", key=str(message.idempotency_key)))))
    assert process_received() == ["unknown->delivered: 1"]
    message.refresh_from_db()
    assert (message.status, message.provider_message_id, message.sent_at) == ("delivered", "wamid.77", NOON)


def test_statuses_for_another_number_or_store_are_skipped(
    store: Any, other_store: Any, connection: MessagingConnection, ann: Contact
) -> None:
    mine = sent_message(store, ann)
    theirs = sent_message(other_store, Contact.objects.create(store=other_store, phone=ANN), wamid="wamid.2")
    post(store, body_of(statuses(status("wamid.1", "delivered")), phone_number_id="999"))
    post(store, body_of(statuses(status("wamid.2", "delivered", key=str(theirs.idempotency_key)))))
    assert process_received() == ["skipped: 1", "no such message: 1"]
    assert set(Message.objects.filter(pk__in=[mine.pk, theirs.pk]).values_list("status", flat=True)) == {"sent"}


# --- inbound messages ------------------------------------------------------------------------------


def test_an_inbound_message_opens_the_window_and_only_moves_it_forward(
    store: Any, connection: MessagingConnection
) -> None:
    with time_machine.travel(NOON + dt.timedelta(hours=1), tick=False):
        post(store, body_of(inbound("wamid.in2", "where is my parcel?", NOON)))
        post(store, body_of(inbound("wamid.in1", "hello?", NOON - dt.timedelta(minutes=5))))  # late, older
        post(store, body_of(inbound("wamid.in3", "skewed clock", NOON + dt.timedelta(days=3))))
        assert process_received() == ["inbound: 1"] * 3
        # the future timestamp counts as now: it must not hold the window open for days
        assert window_of(store) == {ANN: NOON + dt.timedelta(hours=1)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("STOP", {"marketing": "withdrawn", "transactional": "withdrawn"}),
     ("Stop promotions", {"marketing": "withdrawn", "transactional": "withdrawn"}),
     ("start", {"transactional": "granted"}),  # no marketing opt-in from a START alone
     ("yes", {}), ("please stop", {})],
)  # fmt: skip
def test_inbound_keywords_go_to_the_consent_manager(
    store: Any, connection: MessagingConnection, ann: Contact, text: str, expected: dict[str, str]
) -> None:
    post(store, body_of(inbound("wamid.in1", text)))
    [outcome] = process_received()
    assert outcome.startswith("inbound: 1")
    assert dict(ConsentState.objects.filter(contact=ann, channel="whatsapp").values_list("purpose", "status")) == (
        expected
    )
    assert window_of(store) == {ANN: NOON}


def test_inbound_for_another_number_is_skipped(store: Any, connection: MessagingConnection, ann: Contact) -> None:
    post(store, body_of(inbound("wamid.in1", "STOP"), phone_number_id="999"))
    assert process_received() == ["skipped: 1"]
    assert window_of(store) == {}
    assert ConsentEvent.objects.count() == 0


# --- end to end: the fake WhatsApp calls a live server --------------------------------------------


@pytest.fixture
def wa(store: Any, live_server: Any, settings: Any) -> Iterator[FakeWhatsApp]:
    settings.PUBLIC_URL = live_server.url
    url = whatsapp_webhook_url(store.pk)
    fake = FakeWhatsApp(app_secret=APP_SECRET, verify_token=VERIFY, phone_number_id=PHONE_ID,
                        templates={"order_update": ("en_US", 1)}, webhook_url=url)  # fmt: skip
    with fake:
        connect_whatsapp(store_id=store.pk, access_token=fake.access_token, phone_number_id=PHONE_ID,
                         base_url=fake.url, app_secret=APP_SECRET, verify_token=VERIFY,
                         messages_per_second=1000)  # fmt: skip
        yield fake


@pytest.mark.django_db(transaction=True)
def test_meta_can_verify_the_callback_url(store: Any, wa: FakeWhatsApp) -> None:
    assert wa.verify_webhook()
    assert not wa.verify_webhook(verify_token="someone-elses-token")


@pytest.mark.django_db(transaction=True)
def test_the_customers_message_opens_the_window_for_free_text_and_statuses_come_back(
    store: Any, wa: FakeWhatsApp
) -> None:
    wa.faults.duplicate_webhooks = True  # Meta may deliver twice: stored and applied once
    repo = TemplateRepository()
    version = repo.save_template(store, "shipped", "whatsapp", body_text="Hi {{ contact.first_name }}, it shipped",
                                 wa_template_name="order_update", wa_language="en_US",
                                 wa_parameters=["{{ contact.first_name }}"])  # fmt: skip
    repo.publish(version)
    ann = Contact.objects.create(store=store, phone=ANN, first_name="Ann", country="DE")
    bob = Contact.objects.create(store=store, phone="+4915112345602", first_name="Bob", country="DE")
    wa.simulate_inbound(ANN, "where is my parcel?")  # only Ann wrote to the shop
    assert wa.wait_webhooks()
    drain()
    dispatcher = MessageDispatcher(channel_for)
    for contact in (ann, bob):
        dispatcher.queue_message(store=store, contact=contact, channel="whatsapp", purpose="transactional",
                                 template=version, dedupe_key=f"shipped-{contact.pk}")  # fmt: skip
    assert dispatcher.process_queue() == Counter({"sent": 2})
    sent = {m.to: (m.type, m.text, m.template) for m in wa.messages}
    assert sent == {ANN_WA: ("text", "Hi Ann, it shipped", None), "4915112345602": ("template", None, "order_update")}
    assert wa.wait_webhooks()
    drain()
    assert set(Message.objects.values_list("status", flat=True)) == {"read"}
    deliveries = InboxDelivery.objects.all()
    assert len(wa.deliveries) == 2 * (1 + 2 * 3)  # every webhook twice: one inbound, three statuses per message
    assert deliveries.count() == 1 + 2 * 3
    assert {d.status for d in deliveries} == {"processed"}


# --- connecting ------------------------------------------------------------------------------------


def test_the_webhook_secrets_are_kept_encrypted(store: Any, connection: MessagingConnection) -> None:
    with db.cursor() as cursor:
        cursor.execute("SELECT credentials FROM messaging_messagingconnection WHERE id = %s", [connection.pk])
        raw = cursor.fetchone()[0]
    assert APP_SECRET not in raw
    assert VERIFY not in raw
    assert credentials_of(MessagingConnection.objects.get()) == {"access_token": "EAAG-test", "app_secret": APP_SECRET,
                                                                 "verify_token": VERIFY}  # fmt: skip
    assert "app_secret" not in str(connection.settings)


@pytest.mark.parametrize(
    ("field", "value"),
    [("app_secret", "short"), ("app_secret", "has spaces in it, sixteen+"), ("verify_token", "1234")],
)
def test_unusable_webhook_secrets_are_refused_with_a_code(store: Any, field: str, value: str) -> None:
    with pytest.raises(ValidationError) as info:
        connect_whatsapp(store_id=store.pk, access_token="EAAG-test", phone_number_id=PHONE_ID, **{field: value})
    assert (info.value.code, info.value.details) == ("invalid_secret", [{"field": field}])
    assert MessagingConnection.objects.count() == 0
