from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django_tasks_db.models import DBTaskResult
from tests.drain import drain
from tests.woo import body_of, delivery_headers, order_payload

from storeloop.contacts.models import Contact, ContactIdentity
from storeloop.inbox.models import InboxDelivery
from storeloop.orders.models import Order, OrderLine

pytestmark = pytest.mark.django_db(transaction=True)
UTC = dt.UTC


def deliver(store: Any, payload: dict[str, Any], topic: str = "order.updated") -> None:
    body = body_of(payload)
    response = Client().post(
        f"/webhooks/woocommerce/{store.pk}",
        body,
        content_type="application/json",
        headers=delivery_headers(store.webhook_secret, body, topic=topic),
    )
    assert response.status_code == 200, response.content


def test_order_delivery_is_mirrored_exactly(store: Any) -> None:
    deliver(store, order_payload(), topic="order.created")
    drain()
    order = Order.objects.get()
    assert (order.external_id, order.number, order.status, order.currency) == (
        727,
        "727",
        "processing",
        "USD",
    )
    assert order.total == Decimal("29.35")
    assert order.total_tax == Decimal("1.35")
    assert order.shipping_total == Decimal("10.00")
    assert order.payment_method == "cod"
    assert order.is_cod is True
    assert order.date_created == dt.datetime(2017, 3, 22, 19, 28, 2, tzinfo=UTC)
    assert order.date_modified == dt.datetime(2017, 3, 22, 19, 28, 8, tzinfo=UTC)
    assert order.billing["city"] == "San Francisco"
    assert order.meta_data == [{"id": 13106, "key": "_some_key", "value": "yes"}]
    lines = list(
        OrderLine.objects.filter(order=order)
        .order_by("external_id")
        .values_list("external_id", "product_external_id", "variation_external_id", "quantity", "total")
    )
    assert lines == [(315, 93, 0, 2, Decimal("6.00")), (316, 22, 23, 1, Decimal("12.00"))]
    contact = order.contact
    assert contact is not None
    assert (contact.email, contact.phone, contact.first_name, contact.country) == (
        "john.doe@example.com",
        "+15555555555",
        "John",
        "US",
    )
    assert InboxDelivery.objects.get().status == "processed"
    assert InboxDelivery.objects.get().outcome == "created"


def test_an_older_snapshot_never_overwrites_a_newer_one(store: Any) -> None:
    newer = order_payload(status="completed", date_modified_gmt="2017-03-23T10:00:00", total="31.00")
    older = order_payload(status="processing", date_modified_gmt="2017-03-22T19:28:08")
    deliver(store, newer)
    deliver(store, older)  # arrives late
    drain()
    order = Order.objects.get()
    assert (order.status, order.total) == ("completed", Decimal("31.00"))
    outcomes = sorted(InboxDelivery.objects.values_list("outcome", flat=True))
    assert outcomes == ["created", "stale"]


def test_duplicate_deliveries_change_nothing(store: Any) -> None:
    deliver(store, order_payload())
    drain()
    first = Order.objects.get()
    deliver(store, order_payload())  # WooCommerce fires the same order again with a new delivery id
    drain()
    again = Order.objects.get()
    assert again.updated_at == first.updated_at
    assert sorted(InboxDelivery.objects.values_list("outcome", flat=True)) == ["created", "unchanged"]
    assert Contact.objects.count() == 1


def test_delete_and_restore(store: Any) -> None:
    deliver(store, order_payload())
    deliver(store, {"id": 727}, topic="order.deleted")
    drain()
    assert Order.objects.get().deleted_at is not None
    deliver(store, order_payload(date_modified_gmt="2017-03-24T00:00:00"), topic="order.restored")
    drain()
    assert Order.objects.get().deleted_at is None


def test_guest_checkout_with_a_known_email_is_the_same_contact(store: Any) -> None:
    deliver(store, order_payload(id=1, customer_id=55, billing={"email": "Zoe@Example.com"}))
    deliver(store, order_payload(id=2, customer_id=0, billing={"email": "  zoe@example.COM ", "phone": ""}))
    drain()
    assert Contact.objects.count() == 1
    contact = Contact.objects.get()
    assert set(Order.objects.values_list("contact_id", flat=True)) == {contact.pk}
    kinds = dict(ContactIdentity.objects.values_list("kind", "value"))
    assert kinds == {"woo_customer": "55", "email": "zoe@example.com", "phone": "+15555555555"}


def test_phone_is_normalised_with_the_billing_country(store: Any) -> None:
    deliver(
        store,
        order_payload(id=3, billing={"email": "max@example.de", "phone": "(030) 1234567", "country": "DE"}),
    )
    drain()
    assert Contact.objects.get().phone == "+49301234567"


def test_malformed_order_fails_terminally_without_retry(store: Any) -> None:
    payload = order_payload()
    payload["total"] = "twelve"
    deliver(store, payload)
    drain()
    row = InboxDelivery.objects.get()
    assert row.status == "failed"
    assert "total" in row.last_error
    assert Order.objects.count() == 0
    task = DBTaskResult.objects.get()
    assert task.status == "FAILED"
    assert len(task.worker_ids) == 1


def test_replay_processes_a_delivery_again(store: Any) -> None:
    from storeloop.inbox.services import replay_delivery

    deliver(store, order_payload())
    drain()
    Order.objects.all().delete()
    replay_delivery(store=store, delivery_pk=InboxDelivery.objects.get().pk)
    drain()
    assert Order.objects.get().external_id == 727


def test_customer_and_product_deliveries(store: Any) -> None:
    from storeloop.orders.models import Product

    customer = {
        "id": 42,
        "email": "Lukasz@Example.pl",
        "first_name": "Łukasz",
        "last_name": "Wójcik",
        "role": "customer",
        "username": "lukasz",
        "date_created_gmt": "2026-01-01T10:00:00",
        "date_modified_gmt": "2026-01-02T10:00:00",
        "billing": {
            "first_name": "Łukasz",
            "last_name": "Wójcik",
            "email": "lukasz@example.pl",
            "phone": "512 345 678",
            "country": "PL",
        },
        "shipping": {},
        "is_paying_customer": True,
        "meta_data": [],
    }
    product = {
        "id": 93,
        "name": "Mug",
        "slug": "mug",
        "sku": "MUG-1",
        "type": "simple",
        "status": "publish",
        "parent_id": 0,
        "price": "7.50",
        "regular_price": "7.50",
        "sale_price": "",
        "date_created_gmt": "2026-01-01T10:00:00",
        "date_modified_gmt": "2026-01-03T10:00:00",
    }
    deliver(store, customer, topic="customer.created")
    deliver(store, product, topic="product.updated")
    drain()
    contact = Contact.objects.get()
    assert (contact.email, contact.phone, contact.woo_customer_id, contact.first_name) == (
        "lukasz@example.pl",
        "+48512345678",
        42,
        "Łukasz",
    )
    mug = Product.objects.get()
    assert (mug.external_id, mug.sku, mug.price) == (93, "MUG-1", Decimal("7.50"))
    # A later order of that customer lands on the same contact; its line links the product.
    deliver(store, order_payload(id=9, customer_id=42, billing={"email": "other@example.pl"}))
    drain()
    assert Contact.objects.count() == 1
    assert OrderLine.objects.get(external_id=315).product == mug
