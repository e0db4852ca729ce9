"""The messages API: filters, pagination, one message's record, access."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from conftest import ApiClient
from django.test import Client

from storeloop.contacts.models import Contact
from storeloop.integrations.smtp.fake import FakeSmtpServer
from storeloop.messaging.channels.connections import connect_smtp
from storeloop.messaging.channels.factory import channel_for, close_channels
from storeloop.messaging.dispatcher import MessageDispatcher
from storeloop.messaging.models import Message
from storeloop.messaging.templates import TemplateRepository

pytestmark = pytest.mark.django_db
NOON = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _fresh_channels() -> Iterator[None]:
    yield
    close_channels()


def queue(store: Any, contact: Contact, channel: str, n: int, *, campaign_id: int | None = None) -> Message:
    repo = TemplateRepository()
    fields = {"subject": "Thanks for your order"} if channel == "email" else {}
    version = repo.save_template(store, f"receipt-{channel}", channel, body_text="Thanks {{ contact.first_name }}",
                                 **fields)  # fmt: skip
    repo.publish(version)
    return MessageDispatcher(channel_for).queue_message(
        store=store, contact=contact, channel=channel, purpose="transactional", template=version,
        dedupe_key=f"receipt-{channel}-{n}", campaign_id=campaign_id,
    )  # fmt: skip


def contact_of(store: Any, n: int) -> Contact:
    return Contact.objects.create(store=store, email=f"c{n}@example.com", phone=f"+4915112345{n:03d}", first_name="Ann")


def test_list_filters_by_status_channel_contact_and_campaign(api: ApiClient, store: Any) -> None:
    ann, bob = contact_of(store, 1), contact_of(store, 2)
    m1 = queue(store, ann, "email", 1)
    m2 = queue(store, ann, "sms", 2, campaign_id=7)
    m3 = queue(store, bob, "email", 3, campaign_id=7)
    Message.objects.filter(pk=m2.pk).update(status="failed", last_error="21211 invalid number")

    def ids(**params: Any) -> list[int]:
        response = api.get("/api/v1/messages", **params)
        assert response.status_code == 200
        return [m["id"] for m in response.json()["items"]]

    assert ids() == [m3.pk, m2.pk, m1.pk]
    assert ids(status="failed") == [m2.pk]
    assert ids(channel="email") == [m3.pk, m1.pk]
    assert ids(contact=ann.pk) == [m2.pk, m1.pk]
    assert ids(campaign_id=7) == [m3.pk, m2.pk]
    assert ids(campaign_id=7, channel="email", contact=bob.pk, status="queued") == [m3.pk]
    page = api.get("/api/v1/messages", limit=2, offset=0).json()
    assert (page["count"], page["next_offset"]) == (3, 2)
    assert [m["id"] for m in api.get("/api/v1/messages", limit=2, offset=2).json()["items"]] == [m1.pk]
    # Past the end: an empty page, even where the offset would not fit the database's integers.
    for offset in (3, 10**30):
        beyond = api.get("/api/v1/messages", limit=2, offset=offset)
        assert beyond.status_code == 200
        assert beyond.json() == {"count": 3, "next_offset": None, "items": []}
    item = api.get("/api/v1/messages", status="failed").json()["items"][0]
    assert item["last_error"] == "21211 invalid number"
    assert item["template"] == {"template_id": m2.template.template_id, "key": "receipt-sms", "version": 1}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("params", "code"),
    [({"status": "lost"}, "invalid_status"), ({"channel": "fax"}, "invalid_channel"), ({"limit": 0}, "invalid_limit"),
     ({"offset": -1}, "invalid_offset"), ({"contact": "ann"}, "validation_error")],
)  # fmt: skip
def test_bad_filters_are_422(api: ApiClient, store: Any, params: dict[str, Any], code: str) -> None:
    response = api.get("/api/v1/messages", **params)
    assert response.status_code == 422
    assert response.json()["code"] == code


@pytest.mark.django_db(transaction=True)  # the dispatcher sends from worker threads
def test_one_message_shows_its_record_after_a_real_send(api: ApiClient, store: Any) -> None:
    with FakeSmtpServer() as smtp:
        connect_smtp(store_id=store.pk, host=smtp.host, port=smtp.port, security="none",
                     from_addr="shop@shop.example", messages_per_second=1000)  # fmt: skip
        with time_machine.travel(NOON, tick=False):
            message = queue(store, contact_of(store, 1), "email", 1)
            assert MessageDispatcher(channel_for).process_queue() == Counter({"sent": 1})
        assert len(smtp.messages) == 1
    body = api.get(f"/api/v1/messages/{message.pk}").json()
    message.refresh_from_db()
    assert body == {
        "id": message.pk, "contact_id": message.contact_id, "channel": "email", "purpose": "transactional",
        "status": "sent", "reason": "", "campaign_id": None, "priority": 10, "attempts": 1, "provider": "smtp",
        "template": {"template_id": message.template.template_id, "key": "receipt-email", "version": 1},  # type: ignore[union-attr]
        "provider_message_id": smtp.message_ids()[0], "last_error": "",
        "created_at": "2026-06-01T12:00:00Z", "not_before": "2026-06-01T12:00:00Z",
        "attempted_at": "2026-06-01T12:00:00Z", "sent_at": "2026-06-01T12:00:00Z", "delivered_at": None,
        "read_at": None, "dedupe_key": "receipt-email-1", "idempotency_key": str(message.idempotency_key),
        "context": {},
    }  # fmt: skip


def test_another_stores_message_is_404(api: ApiClient, store: Any, other_store: Any) -> None:
    theirs = queue(other_store, contact_of(other_store, 9), "email", 1)
    response = api.get(f"/api/v1/messages/{theirs.pk}")
    assert response.status_code == 404
    assert response.json()["code"] == "message_not_found"
    assert api.get("/api/v1/messages").json() == {"count": 0, "next_offset": None, "items": []}
    assert api.get("/api/v1/messages", contact=theirs.contact_id).json()["count"] == 0
    assert api.get("/api/v1/messages/not-a-number").status_code == 422


@pytest.mark.parametrize("path", ["/api/v1/messages", "/api/v1/messages/{id}"])
def test_message_endpoints_need_a_key(store: Any, path: str) -> None:
    message = queue(store, contact_of(store, 1), "email", 1)
    response = Client().get(path.format(id=message.pk))
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert ApiClient("slk_000000000000_nope").get(path.format(id=message.pk)).status_code == 401


@pytest.mark.django_db(transaction=True)  # the dispatcher sends from worker threads
def test_unknown_messages_are_sent_again_only_at_an_operators_word(
    api: ApiClient, store: Any, other_store: Any
) -> None:
    with FakeSmtpServer() as smtp:
        connect_smtp(store_id=store.pk, host=smtp.host, port=smtp.port, security="none",
                     from_addr="shop@shop.example", messages_per_second=1000)  # fmt: skip
        lost, sent = queue(store, contact_of(store, 1), "email", 1), queue(store, contact_of(store, 2), "email", 2)
        theirs = queue(other_store, Contact.objects.create(store=other_store, email="x@example.com"), "email", 3)
        # A worker died before reaching ``lost`` (the reaper marked it); ``sent`` went out.
        Message.objects.filter(pk__in=[lost.pk, theirs.pk]).update(status="unknown", attempted_at=NOON)
        Message.objects.filter(pk=sent.pk).update(status="sent", sent_at=NOON)

        for bad in ({"ids": []}, {"ids": list(range(1, 1002))}, {"ids": [lost.pk], "all": True}):
            response = api.post("/api/v1/messages/resend", bad)
            assert response.status_code == 422
            assert response.json()["code"] in ("invalid_ids", "validation_error")
        assert Message.objects.get(pk=lost.pk).status == "unknown"

        response = api.post("/api/v1/messages/resend", {"ids": [lost.pk, sent.pk, theirs.pk, 10**9]})
        assert (response.status_code, response.json()) == (200, {"queued": 1})
        statuses = dict(Message.objects.values_list("pk", "status"))
        assert statuses == {lost.pk: "queued", sent.pk: "sent", theirs.pk: "unknown"}  # another store's: untouched
        assert Message.objects.get(pk=lost.pk).reason == "sent again by an operator: may arrive twice"
        assert MessageDispatcher(channel_for).process_queue() == Counter({"sent": 1})
        assert [list(m.rcpt_tos) for m in smtp.messages] == [["c1@example.com"]]
    assert api.post("/api/v1/messages/resend", {"ids": [lost.pk]}).json() == {"queued": 0}  # sent now: left alone
    assert (
        Client().post("/api/v1/messages/resend", {"ids": [lost.pk]}, content_type="application/json").status_code == 401
    )
