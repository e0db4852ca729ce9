"""Twilio webhooks: status callbacks and inbound SMS, through the receiver, the inbox and the worker.

The receiver is driven with Django's test client (signatures computed like Twilio's) and, end to
end, by the fake Twilio posting real signed callbacks to a live server.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import time_machine
from django.test import Client
from django_tasks_db.models import DBTaskResult
from tests.drain import drain

from storeloop.consent.models import ConsentEvent, ConsentState
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.inbox.models import InboxDelivery
from storeloop.inbox.services import process_delivery, replay_delivery
from storeloop.integrations.twilio.fake import FakeTwilio
from storeloop.integrations.twilio.signature import compute_signature
from storeloop.messaging.channels.base import ChannelInterface, Envelope, SendResult
from storeloop.messaging.channels.connections import connect_smtp, connect_twilio
from storeloop.messaging.channels.factory import channel_for, close_channels
from storeloop.messaging.dispatcher import MessageDispatcher
from storeloop.messaging.inbound.links import twilio_inbound_url, twilio_status_url
from storeloop.messaging.inbound.views import EMPTY_TWIML
from storeloop.messaging.models import Message, MessagingConnection
from storeloop.messaging.templates import TemplateRepository

pytestmark = pytest.mark.django_db
PUBLIC = "https://loop.example"
ACCOUNT = "AC" + "1" * 32
TOKEN = "the-auth-token"
ANN = "+4915112345601"
SHOP = "+15005550006"
NOON = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _public_url(settings: Any) -> Iterator[None]:
    settings.PUBLIC_URL = PUBLIC
    yield
    close_channels()


@pytest.fixture
def connection(store: Any) -> MessagingConnection:
    return connect_twilio(store_id=store.pk, account_sid=ACCOUNT, auth_token=TOKEN, from_number=SHOP)


@pytest.fixture
def ann(store: Any) -> Contact:
    return Contact.objects.create(store=store, phone=ANN, email="ann@example.com", first_name="Ann", country="DE")


def sid(n: int) -> str:
    return f"SM{n:032x}"


def status_params(message_sid: str, status: str, **extra: str) -> dict[str, str]:
    return {"AccountSid": ACCOUNT, "ApiVersion": "2010-04-01", "From": SHOP, "To": ANN, "MessageSid": message_sid,
            "SmsSid": message_sid, "MessageStatus": status, "SmsStatus": status, **extra}  # fmt: skip


def inbound_params(message_sid: str, body: str, sender: str = ANN) -> dict[str, str]:
    return {"AccountSid": ACCOUNT, "ApiVersion": "2010-04-01", "From": sender, "To": SHOP, "Body": body,
            "MessageSid": message_sid, "SmsMessageSid": message_sid, "SmsSid": message_sid, "NumMedia": "0",
            "NumSegments": "1", "SmsStatus": "received"}  # fmt: skip


def post(
    path: str, params: dict[str, str], *, token: str = TOKEN, signed_url: str | None = None, signature: str | None = ""
) -> Any:
    """POST like Twilio: form-encoded, signed over the full public URL (``signature=None`` sends none)."""
    headers = {}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature or compute_signature(token, signed_url or PUBLIC + path, params)
    return Client().post(path, urlencode(params), content_type="application/x-www-form-urlencoded", headers=headers)


def status_path(store: Any, key: str | None = None) -> str:
    return f"/webhooks/twilio/{store.pk}/status" + (f"?sl_key={key}" if key else "")


def inbound_path(store: Any) -> str:
    return f"/webhooks/twilio/{store.pk}/inbound"


def sent_message(store: Any, contact: Contact, n: int = 1, **fields: Any) -> Message:
    values: dict[str, Any] = {"status": Message.Status.SENT, "provider_message_id": sid(n), "sent_at": NOON,
                              "provider": "twilio", "attempts": 1}  # fmt: skip
    values.update(fields)
    return Message.objects.create(store=store, contact=contact, channel="sms", purpose="transactional",
                                  dedupe_key=f"m-{n}", not_before=NOON, **values)  # fmt: skip


def process_received() -> list[str]:
    """Run the worker's processing for every stored delivery, oldest first; their outcomes."""
    rows = InboxDelivery.objects.filter(status=InboxDelivery.Status.RECEIVED).order_by("id")
    return [process_delivery(row.pk) for row in rows]


def nothing_written() -> None:
    assert InboxDelivery.objects.count() == 0
    assert DBTaskResult.objects.count() == 0


def consent_of(contact: Contact, channel: str = "sms") -> dict[str, str]:
    rows = ConsentState.objects.filter(contact=contact, channel=channel)
    return dict(rows.values_list("purpose", "status"))


# --- the receiver --------------------------------------------------------------------------------


def test_a_signed_status_callback_is_stored_and_queued_by_id(store: Any, connection: MessagingConnection) -> None:
    key = str(uuid.uuid4())
    response = post(status_path(store, key), status_params(sid(1), "delivered"))
    assert response.status_code == 200
    assert (response["Content-Type"], response.content) == ("text/xml", EMPTY_TWIML)
    row = InboxDelivery.objects.get()
    assert (row.source, row.store_id, row.topic, row.delivery_id, row.status) == (
        "twilio", store.pk, "message.status", f"{sid(1)}:delivered", "received",
    )  # fmt: skip
    stored = orjson.loads(bytes(row.body))
    assert stored["url"] == f"{PUBLIC}/webhooks/twilio/{store.pk}/status?sl_key={key}"
    assert stored["form"] == urlencode(status_params(sid(1), "delivered"))
    task = DBTaskResult.objects.get()
    assert task.args_kwargs == {"args": [str(row.pk)], "kwargs": {}}  # an id, never a phone number


def test_a_redelivered_callback_is_stored_once(store: Any, connection: MessagingConnection) -> None:
    for _ in range(2):
        assert post(status_path(store), status_params(sid(1), "sent")).status_code == 200
    assert InboxDelivery.objects.count() == 1
    assert DBTaskResult.objects.count() == 1


@pytest.mark.parametrize(
    "case", ["missing", "wrong token", "signed for another store", "tampered status", "signed without the query"]
)
def test_a_bad_signature_is_refused_and_nothing_is_written(
    store: Any, other_store: Any, connection: MessagingConnection, case: str
) -> None:
    params = status_params(sid(1), "delivered")
    path = status_path(store, "k1")
    if case == "missing":
        response = post(path, params, signature=None)
    elif case == "wrong token":
        response = post(path, params, token="not-the-token")
    elif case == "signed for another store":
        response = post(path, params, signed_url=PUBLIC + status_path(other_store, "k1"))
    elif case == "tampered status":
        response = post(path, params, signature=compute_signature(TOKEN, PUBLIC + path, {**params, "To": "+1"}))
    else:
        response = post(path, params, signed_url=PUBLIC + status_path(store))
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "invalid_signature"
    assert "X-Twilio-Signature" in body["message"]
    nothing_written()


def test_an_unknown_store_or_channel_is_not_found(
    store: Any, connection: MessagingConnection, other_store: Any
) -> None:
    params = status_params(sid(1), "sent")
    unknown = post("/webhooks/twilio/999999/status", params)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "store_not_found")
    connect_smtp(store_id=other_store.pk, host="smtp.example.com", from_addr="shop@other.example")
    unconnected = post(status_path(other_store), params)
    assert (unconnected.status_code, unconnected.json()["code"]) == (404, "channel_not_configured")
    assert "no sms connection" in unconnected.json()["message"]
    nothing_written()


def test_a_signed_body_that_is_not_a_callback_is_refused(store: Any, connection: MessagingConnection) -> None:
    response = post(status_path(store), {"AccountSid": ACCOUNT, "MessageStatus": "sent"})
    assert (response.status_code, response.json()["code"]) == (400, "invalid_payload")
    assert "MessageSid" in response.json()["message"]
    not_utf8 = Client().post(status_path(store), b"Body=\xff", content_type="application/x-www-form-urlencoded",
                             headers={"X-Twilio-Signature": "x"})  # fmt: skip
    assert (not_utf8.status_code, not_utf8.json()["code"]) == (400, "invalid_payload")
    nothing_written()


def test_limits_and_methods(store: Any, connection: MessagingConnection, settings: Any) -> None:
    assert Client().get(status_path(store)).status_code == 405
    settings.WEBHOOK_MAX_BYTES = 100
    response = post(status_path(store), status_params(sid(1), "sent", Extra="x" * 200))
    assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")
    nothing_written()


# --- status callbacks, processed -------------------------------------------------------------------


def test_delivered_moves_the_message_and_a_late_sent_does_not_move_it_back(
    store: Any, connection: MessagingConnection, ann: Contact
) -> None:
    message = sent_message(store, ann)
    post(status_path(store), status_params(sid(1), "delivered", RawDlrDoneDate="2606011203"))
    post(status_path(store), status_params(sid(1), "sent"))
    assert process_received() == ["sent->delivered", "stale sent (delivered)"]
    message.refresh_from_db()
    assert (message.status, message.delivered_at, message.sent_at) == (
        "delivered", dt.datetime(2026, 6, 1, 12, 3, tzinfo=dt.UTC), NOON,
    )  # fmt: skip


def test_delivered_after_read_stays_read_but_records_when(
    store: Any, connection: MessagingConnection, ann: Contact
) -> None:
    message = sent_message(store, ann)
    with time_machine.travel(NOON + dt.timedelta(minutes=5), tick=False):
        post(status_path(store), status_params(sid(1), "read"))
        post(status_path(store), status_params(sid(1), "delivered", RawDlrDoneDate="2606011201"))
        assert process_received() == ["sent->read", "stale delivered (read)"]
    message.refresh_from_db()
    assert message.status == "read"
    assert message.read_at == NOON + dt.timedelta(minutes=5)
    # the first report (read) implied delivery; the late one does not rewrite that time
    assert message.delivered_at == NOON + dt.timedelta(minutes=5)


def test_undelivered_fails_the_message_with_the_error_and_stays_failed(
    store: Any, connection: MessagingConnection, ann: Contact
) -> None:
    message = sent_message(store, ann)
    post(status_path(store), status_params(sid(1), "undelivered", ErrorCode="30003"))
    post(status_path(store), status_params(sid(1), "delivered"))
    assert process_received() == ["sent->failed", "left failed"]
    message.refresh_from_db()
    assert (message.status, message.reason, message.last_error) == (
        "failed", "delivery_failed", "undelivered: Twilio error 30003 (https://www.twilio.com/docs/errors/30003)",
    )  # fmt: skip
    assert consent_of(ann) == {}  # an unreachable handset is no opt-out


def test_failed_after_delivered_is_stale(store: Any, connection: MessagingConnection, ann: Contact) -> None:
    message = sent_message(store, ann, status=Message.Status.DELIVERED, delivered_at=NOON)
    post(status_path(store), status_params(sid(1), "failed", ErrorCode="30008"))
    assert process_received() == ["stale failed (delivered)"]
    message.refresh_from_db()
    assert (message.status, message.last_error) == ("delivered", "")


def test_error_21610_withdraws_sms_consent_once(store: Any, connection: MessagingConnection, ann: Contact) -> None:
    gate = MessagingConsentManager()
    gate.grant_consent(ann, "sms", "marketing", source="checkout")
    gate.grant_consent(ann, "email", "marketing", source="checkout")
    message = sent_message(store, ann)
    post(status_path(store), status_params(sid(1), "failed", ErrorCode="21610"))
    assert process_received() == ["sent->failed; consent withdrawn: 2"]
    message.refresh_from_db()
    assert message.status == "failed"
    assert consent_of(ann) == {"marketing": "withdrawn", "transactional": "withdrawn"}
    assert consent_of(ann, "email") == {"marketing": "granted"}  # the carrier's STOP is about SMS only
    withdrawals = ConsentEvent.objects.filter(contact=ann, action="withdraw")
    assert sorted(withdrawals.values_list("channel", "purpose", "source")) == [
        ("sms", "marketing", "provider_opt_out"), ("sms", "transactional", "provider_opt_out"),
    ]  # fmt: skip
    assert withdrawals.first().evidence == {"provider": "twilio", "error_code": 21610, "message_sid": sid(1)}

    replay_delivery(store=store, delivery_pk=InboxDelivery.objects.get().pk)
    assert process_received() == ["left failed; consent withdrawn: 0"]
    assert ConsentEvent.objects.filter(contact=ann, action="withdraw").count() == 2


def test_our_key_names_a_message_whose_send_answer_was_lost(
    store: Any, connection: MessagingConnection, ann: Contact
) -> None:
    message = sent_message(store, ann, status=Message.Status.UNKNOWN, provider_message_id="", sent_at=None)
    post(status_path(store, str(message.idempotency_key)), status_params(sid(9), "sent"))
    with time_machine.travel(NOON + dt.timedelta(seconds=3), tick=False):
        assert process_received() == ["unknown->sent"]
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("sent", sid(9))
    assert message.sent_at == NOON + dt.timedelta(seconds=3)  # now it counts towards frequency caps


def test_a_callback_cannot_touch_another_stores_message(
    store: Any, other_store: Any, connection: MessagingConnection, ann: Contact
) -> None:
    theirs = Contact.objects.create(store=other_store, phone=ANN)
    other_message = sent_message(other_store, theirs)  # the same provider id, in the other store
    post(status_path(store, str(other_message.idempotency_key)), status_params(sid(1), "delivered"))
    assert process_received() == ["no such message"]
    other_message.refresh_from_db()
    assert other_message.status == "sent"


# --- inbound SMS -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", {"marketing": "withdrawn", "transactional": "withdrawn"}),
        (" stopall ", {"marketing": "withdrawn", "transactional": "withdrawn"}),
        ("Unsubscribe", {"marketing": "withdrawn", "transactional": "withdrawn"}),
        ("REVOKE", {"marketing": "withdrawn", "transactional": "withdrawn"}),
        # START from someone who never opted in: service messages again, no marketing opt-in
        ("start", {"transactional": "granted"}),
        ("UNSTOP", {"transactional": "granted"}),
        ("HELP", {}),
        ("stop sending me that", {}),
    ],
)
def test_inbound_keywords_go_to_the_consent_manager(
    store: Any, connection: MessagingConnection, ann: Contact, body: str, expected: dict[str, str]
) -> None:
    response = post(inbound_path(store), inbound_params(sid(5), body))
    assert (response.status_code, response["Content-Type"], response.content) == (200, "text/xml", EMPTY_TWIML)
    row = InboxDelivery.objects.get()
    assert (row.topic, row.delivery_id) == ("message.inbound", sid(5))
    process_received()
    assert consent_of(ann) == expected
    if expected:
        event = ConsentEvent.objects.filter(contact=ann).first()
        assert event is not None
        assert event.source == "sms_keyword"
        assert event.evidence["message_sid"] == sid(5)


def test_inbound_outcomes(store: Any, connection: MessagingConnection, ann: Contact) -> None:
    for n, body in enumerate(["STOP", "HELP", "where is my parcel?"], start=1):
        post(inbound_path(store), inbound_params(sid(n), body))
    assert process_received() == ["keyword stop: 2 consent event(s)", "keyword help: 0 consent event(s)",
                                  "message without keyword"]  # fmt: skip


def test_a_stop_only_concerns_the_store_it_was_sent_to(
    store: Any, other_store: Any, connection: MessagingConnection, ann: Contact
) -> None:
    theirs = Contact.objects.create(store=other_store, phone=ANN)
    MessagingConsentManager().grant_consent(theirs, "sms", "marketing", source="checkout")
    post(inbound_path(store), inbound_params(sid(5), "STOP"))
    process_received()
    assert consent_of(ann)["marketing"] == "withdrawn"
    assert consent_of(theirs) == {"marketing": "granted"}


def test_an_unsigned_inbound_message_changes_nothing(store: Any, connection: MessagingConnection, ann: Contact) -> None:
    response = post(inbound_path(store), inbound_params(sid(5), "STOP"), token="guess")
    assert response.status_code == 401
    nothing_written()
    assert ConsentEvent.objects.count() == 0


# --- end to end: the fake Twilio calls a live server ----------------------------------------------


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio(seed=4) as fake:
        yield fake


def published(store: Any, key: str, text: str) -> Any:
    repo = TemplateRepository()
    version = repo.save_template(store, key, "sms", body_text=text)
    repo.publish(version)
    return version


@pytest.mark.django_db(transaction=True)
def test_the_fakes_callbacks_settle_every_message(
    store: Any, twilio: FakeTwilio, live_server: Any, settings: Any
) -> None:
    settings.PUBLIC_URL = live_server.url
    connect_twilio(store_id=store.pk, account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                   from_number=twilio.from_number, base_url=twilio.url, messages_per_second=1000)  # fmt: skip
    bob = "+4915112345602"
    twilio.numbers.fail_delivery.add(bob)
    version = published(store, "cod", "Your parcel arrives today")
    dispatcher = MessageDispatcher(channel_for)
    with time_machine.travel(NOON, tick=True):
        for n, phone in enumerate([ANN, bob]):
            contact = Contact.objects.create(store=store, phone=phone, country="DE")
            dispatcher.queue_message(store=store, contact=contact, channel="sms", purpose="transactional",
                                     template=version, dedupe_key=f"cod-{n}")  # fmt: skip
        assert dispatcher.process_queue() == Counter({"sent": 2})
        assert twilio.flush()
        drain()
    # Without a status_callback of its own, the connection sends Twilio to our status webhook.
    assert {str(m.status_callback).split("?")[0] for m in twilio.messages} == {twilio_status_url(store.pk)}
    statuses = dict(Message.objects.values_list("contact__phone", "status"))
    assert statuses == {ANN: "delivered", bob: "failed"}
    assert Message.objects.get(contact__phone=bob).last_error.startswith("undelivered: Twilio error 30003")
    assert {c.status for c in twilio.callbacks} == {200}
    assert set(InboxDelivery.objects.values_list("status", flat=True)) == {"processed"}
    assert InboxDelivery.objects.count() == len(twilio.callbacks) == 4  # sent + delivered/undelivered each


@pytest.mark.django_db(transaction=True)
def test_a_send_whose_answer_was_lost_is_settled_by_its_callbacks_not_resent(
    store: Any, twilio: FakeTwilio, live_server: Any, settings: Any
) -> None:
    settings.PUBLIC_URL = live_server.url
    connect_twilio(store_id=store.pk, account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                   from_number=twilio.from_number, base_url=twilio.url, messages_per_second=1000)  # fmt: skip
    twilio.faults.accept_then_drop = 1
    contact = Contact.objects.create(store=store, phone=ANN, country="DE")
    dispatcher = MessageDispatcher(channel_for)
    with time_machine.travel(NOON, tick=True):
        dispatcher.queue_message(store=store, contact=contact, channel="sms", purpose="transactional",
                                 template=published(store, "cod", "Today!"), dedupe_key="cod-1")  # fmt: skip
        assert dispatcher.process_queue() == Counter({"unknown": 1})
        assert twilio.flush()
        drain()
        assert dispatcher.process_queue() == Counter()
    [sent] = twilio.messages
    message = Message.objects.get()
    assert (message.status, message.provider_message_id) == ("delivered", sent.sid)
    assert twilio.sent_count(ANN) == 1


@pytest.mark.django_db(transaction=True)
def test_a_report_that_overtakes_the_send_outcome_is_kept(
    store: Any, twilio: FakeTwilio, live_server: Any, settings: Any
) -> None:
    settings.PUBLIC_URL = live_server.url
    connect_twilio(store_id=store.pk, account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                   from_number=twilio.from_number, base_url=twilio.url, messages_per_second=1000)  # fmt: skip

    class SlowToAnswer:
        """The real channel, but the provider's callbacks are processed before it returns."""

        name = "sms"

        def __init__(self, inner: ChannelInterface) -> None:
            self.inner = inner

        def validate_message(self, envelope: Envelope) -> str | None:
            return self.inner.validate_message(envelope)

        def send_message(self, envelopes: list[Envelope]) -> list[SendResult]:
            results = self.inner.send_message(envelopes)
            assert twilio.flush()
            drain()
            assert Message.objects.get().status == "delivered"  # while the dispatcher still says "sending"
            return results

        def test_connection(self) -> None:
            self.inner.test_connection()

    contact = Contact.objects.create(store=store, phone=ANN, country="DE")
    dispatcher = MessageDispatcher(lambda s, c: SlowToAnswer(channel_for(s, c)))
    with time_machine.travel(NOON, tick=True):
        dispatcher.queue_message(store=store, contact=contact, channel="sms", purpose="transactional",
                                 template=published(store, "cod", "Today!"), dedupe_key="cod-1")  # fmt: skip
        assert dispatcher.process_queue() == Counter({"sent": 1})
    [sent] = twilio.messages
    message = Message.objects.get()
    assert (message.status, message.provider_message_id, message.attempts) == ("delivered", sent.sid, 1)
    assert message.sent_at is not None
    assert message.claimed_until is None


@pytest.mark.django_db(transaction=True)
def test_a_stop_from_the_fake_blocks_the_next_marketing_sms(
    store: Any, twilio: FakeTwilio, live_server: Any, settings: Any
) -> None:
    settings.PUBLIC_URL = live_server.url
    connect_twilio(store_id=store.pk, account_sid=twilio.account_sid, auth_token=twilio.auth_token,
                   from_number=twilio.from_number, base_url=twilio.url, messages_per_second=1000)  # fmt: skip
    contact = Contact.objects.create(store=store, phone=ANN, country="DE")
    gate = MessagingConsentManager()
    gate.grant_consent(contact, "sms", "marketing", source="checkout")
    record = twilio.simulate_inbound(ANN, "Stop", twilio_inbound_url(store.pk))
    assert record.status == 200
    drain()
    assert gate.has_consent(contact, "sms", "marketing").reason == "withdrawn"
    dispatcher = MessageDispatcher(channel_for)
    with time_machine.travel(NOON, tick=True):
        dispatcher.queue_message(store=store, contact=contact, channel="sms", purpose="marketing",
                                 template=published(store, "sale", "20% off"), dedupe_key="sale-1")  # fmt: skip
        assert dispatcher.process_queue() == Counter({"suppressed": 1})
    assert twilio.messages == []
