"""Webhook behaviour of the fake shop: ping, signed deliveries, auto-disable, fault switches."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest

from storeloop.integrations.woocommerce.client import WooCommerceClient
from storeloop.integrations.woocommerce.fake import FakeWooShop
from storeloop.integrations.woocommerce.models import parse_order
from storeloop.integrations.woocommerce.signature import verify_signature

from .receiver import Receiver

SECRET = "whsec-Zm9vYmFy"


def hook(client: WooCommerceClient, receiver: Receiver, topic: str) -> int:
    return client.create_webhook(name=f"Storeloop {topic}", topic=topic, delivery_url=receiver.url, secret=SECRET).id


def test_create_sends_an_unsigned_form_ping(shop: FakeWooShop, client: WooCommerceClient, receiver: Receiver) -> None:
    webhook = client.create_webhook(name="Storeloop", topic="order.created", delivery_url=receiver.url, secret=SECRET)
    assert webhook.status == "active"
    assert "secret" not in webhook.raw
    assert shop.flush()
    [ping] = receiver.wait_for(1)
    assert ping.path == "/hooks/woocommerce"
    assert ping.body == f"webhook_id={webhook.id}".encode()
    assert parse_qs(ping.body.decode()) == {"webhook_id": [str(webhook.id)]}
    assert ping.headers["content-type"] == "application/x-www-form-urlencoded"
    assert ping.headers["user-agent"] == "WooCommerce/9.4.0 Hookshot (WordPress/6.7)"
    assert not [name for name in ping.headers if name.startswith("x-wc-")]
    assert shop.webhooks[0]["pending_delivery"] is False


def test_deliveries_are_signed_and_carry_the_resource(
    shop: FakeWooShop, client: WooCommerceClient, receiver: Receiver
) -> None:
    webhook_id = hook(client, receiver, "order.created")
    order = shop.create_order(payment_method="cod")
    assert shop.flush()
    [delivery] = receiver.deliveries
    headers = delivery.headers
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "WooCommerce/9.4.0 Hookshot (WordPress/6.7)"
    assert headers["x-wc-webhook-source"] == shop.url + "/"
    assert (
        headers["x-wc-webhook-topic"],
        headers["x-wc-webhook-resource"],
        headers["x-wc-webhook-event"],
    ) == (
        "order.created",
        "order",
        "created",
    )
    assert headers["x-wc-webhook-id"] == str(webhook_id)
    assert len(headers["x-wc-webhook-delivery-id"]) == 32
    assert verify_signature(SECRET, delivery.body, headers["x-wc-webhook-signature"])
    assert not verify_signature("another-secret", delivery.body, headers["x-wc-webhook-signature"])
    assert b"\\/" in delivery.body  # PHP-escaped JSON: verify the raw bytes, never re-serialise
    payload = json.loads(delivery.body)
    assert payload == shop.get_order(order["id"])
    parsed = parse_order(payload)
    assert (parsed.id, parsed.payment_method, parsed.payment_method_title) == (
        order["id"],
        "cod",
        "Cash on delivery",
    )
    assert [(d.kind, d.topic, d.resource_id, d.status_code) for d in shop.deliveries] == [
        ("ping", "ping", None, 200),
        ("delivery", "order.created", order["id"], 200),
    ]


def test_rest_update_fires_order_updated_built_at_send_time(
    shop: FakeWooShop, client: WooCommerceClient, receiver: Receiver
) -> None:
    hook(client, receiver, "order.updated")
    assert shop.flush()
    updated = client.update_order(1001, status="completed")
    assert shop.flush()
    [delivery] = receiver.deliveries
    payload = json.loads(delivery.body)
    assert (payload["id"], payload["status"]) == (1001, "completed")
    assert payload["date_modified_gmt"] == updated.raw["date_modified_gmt"]


def test_trash_restore_and_force_delete(shop: FakeWooShop, client: WooCommerceClient, receiver: Receiver) -> None:
    for topic in ("order.deleted", "order.restored"):
        hook(client, receiver, topic)
    shop.delete_order(1002)
    assert shop.flush()
    assert client.get_order(1002).status == "trash"
    shop.restore_order(1002)
    assert shop.flush()
    deleted, restored = receiver.deliveries
    assert (deleted.headers["x-wc-webhook-topic"], json.loads(deleted.body)) == (
        "order.deleted",
        {"id": 1002},
    )
    assert restored.headers["x-wc-webhook-topic"] == "order.restored"
    assert json.loads(restored.body)["status"] == client.get_order(1002).status != "trash"
    shop.delete_order(1002, force=True)  # WooCommerce fires nothing for a permanent delete
    assert shop.flush()
    assert len(receiver.deliveries) == 2
    assert shop.orders.get(1002) is None


def test_disabled_on_the_seventh_consecutive_failure_and_reenabled(
    shop: FakeWooShop, client: WooCommerceClient, receiver: Receiver
) -> None:
    receiver.status = 500
    webhook_id = hook(client, receiver, "order.updated")
    for n in range(1, 8):
        shop.set_status(1000 + n, "completed")
        assert shop.flush()
        state = shop.webhooks[0]
        if n < 7:
            assert (state["status"], state["failure_count"]) == ("active", n)
    assert (state["status"], state["failure_count"]) == ("disabled", 6)
    assert [w.status for w in client.list_webhooks()] == ["disabled"]
    sent = len(receiver.deliveries)
    shop.set_status(1010, "completed")
    assert shop.flush()
    assert len(receiver.deliveries) == sent  # disabled: nothing is sent

    # Re-enabling keeps failure_count: the next failure disables it again at once.
    assert client.update_webhook(webhook_id, status="active").status == "active"
    shop.set_status(1011, "completed")
    assert shop.flush()
    assert shop.webhooks[0]["status"] == "disabled"

    client.update_webhook(webhook_id, status="active")
    receiver.status = 200
    shop.set_status(1012, "completed")
    assert shop.flush()
    assert (shop.webhooks[0]["status"], shop.webhooks[0]["failure_count"]) == ("active", 0)
    assert json.loads(receiver.deliveries[-1].body)["id"] == 1012


def test_redirects_count_as_success(shop: FakeWooShop, client: WooCommerceClient, receiver: Receiver) -> None:
    receiver.status = 302
    hook(client, receiver, "order.updated")
    shop.set_status(1001, "completed")
    assert shop.flush()
    assert shop.webhooks[0]["failure_count"] == 0


def test_duplicate_switch_sends_twice_with_distinct_ids(
    shop: FakeWooShop, client: WooCommerceClient, receiver: Receiver
) -> None:
    hook(client, receiver, "order.updated")
    shop.faults.duplicate_rate = 1.0
    shop.set_status(1001, "on-hold")
    assert shop.flush()
    first, second = receiver.deliveries
    assert json.loads(first.body)["id"] == json.loads(second.body)["id"] == 1001
    assert first.headers["x-wc-webhook-delivery-id"] != second.headers["x-wc-webhook-delivery-id"]
    assert verify_signature(SECRET, second.body, second.headers["x-wc-webhook-signature"])
    assert [d.duplicate for d in shop.deliveries if d.kind == "delivery"] == [False, True]


def test_drop_switch_never_sends(shop: FakeWooShop, client: WooCommerceClient, receiver: Receiver) -> None:
    hook(client, receiver, "order.updated")
    assert shop.flush()
    shop.faults.drop_rate = 1.0
    shop.set_status(1001, "on-hold")
    assert shop.flush()
    assert receiver.deliveries == []
    assert [(d.kind, d.resource_id) for d in shop.deliveries][-1] == ("dropped", 1001)


def test_reorder_switch_sends_the_next_delivery_first(
    shop: FakeWooShop, client: WooCommerceClient, receiver: Receiver
) -> None:
    hook(client, receiver, "order.created")
    assert shop.flush()
    shop.faults.reorder_rate = 1.0
    first = shop.create_order()
    second = shop.create_order()
    assert shop.flush()
    assert [json.loads(d.body)["id"] for d in receiver.deliveries] == [second["id"], first["id"]]


def test_faults_via_control_endpoint(shop: FakeWooShop) -> None:
    import httpx

    response = httpx.post(f"{shop.url}/__fake__/faults", json={"drop_rate": 0.5, "latency_ms": 0})
    assert response.status_code == 200
    assert response.json()["drop_rate"] == 0.5
    assert shop.faults.drop_rate == 0.5
    rejected = httpx.post(f"{shop.url}/__fake__/faults", json={"drop_rate": 2})
    assert rejected.status_code == 400
    assert httpx.post(f"{shop.url}/__fake__/faults", json={"nope": 1}).status_code == 400
    assert shop.faults.drop_rate == 0.5


@pytest.mark.parametrize("topic", ["customer.created", "customer.updated", "product.updated"])
def test_customer_and_product_topics(
    shop: FakeWooShop, client: WooCommerceClient, receiver: Receiver, topic: str
) -> None:
    hook(client, receiver, topic)
    if topic == "customer.created":
        resource_id = shop.create_customer(email="Neue.Kundin@example.com", first_name="Jürgen")["id"]
    elif topic == "customer.updated":
        resource_id = shop.update_customer(3, first_name="José María")["id"]
    else:
        resource_id = shop.update_product(10, regular_price="26.00")["id"]
    assert shop.flush()
    [delivery] = receiver.deliveries
    assert delivery.headers["x-wc-webhook-topic"] == topic
    assert json.loads(delivery.body)["id"] == resource_id


def test_invalid_webhook_requests(shop: FakeWooShop) -> None:
    import httpx

    auth = ("ck_test", "cs_test")
    bad_topic = httpx.post(
        f"{shop.api_url}/webhooks", json={"topic": "order.exploded", "delivery_url": "http://x"}, auth=auth
    )
    assert (bad_topic.status_code, bad_topic.json()["code"]) == (
        400,
        "woocommerce_rest_shop_webhook_invalid_topic",
    )
    created = httpx.post(
        f"{shop.api_url}/webhooks",
        json={"topic": "order.created", "delivery_url": "http://127.0.0.1:9/"},
        auth=auth,
    )
    assert created.status_code == 201
    assert created.headers["location"].endswith(f"/webhooks/{created.json()['id']}")
    trash = httpx.delete(f"{shop.api_url}/webhooks/{created.json()['id']}", auth=auth)
    assert (trash.status_code, trash.json()["code"]) == (501, "woocommerce_rest_trash_not_supported")


def test_real_delivery_ids_collide_within_one_second(receiver: Receiver) -> None:
    """WooCommerce's delivery id is wp_hash(webhook_id . unix_second): not unique per delivery."""
    fixed = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
    with FakeWooShop(initial_orders=20, seed=2, clock=lambda: fixed) as frozen:
        frozen.faults.delivery_id_per_second = True
        frozen.create_webhook(topic="order.updated", delivery_url=receiver.url, secret=SECRET)
        frozen.set_status(1001, "completed")
        frozen.set_status(1002, "cancelled")
        assert frozen.flush()
        first, second = receiver.deliveries
    assert first.headers["x-wc-webhook-delivery-id"] == second.headers["x-wc-webhook-delivery-id"]
    assert json.loads(first.body)["id"] != json.loads(second.body)["id"]
