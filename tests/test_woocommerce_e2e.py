"""End to end against the fake shop: real HTTP both ways, the real receiver, the real worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from storeloop.cli.main import main
from storeloop.integrations.woocommerce.fake import FakeWooShop
from storeloop.orders.models import Order
from storeloop.orders.reconcile import reconcile_store
from storeloop.stores.models import Store, StoreWebhook
from storeloop.stores.woo import WEBHOOK_TOPICS
from tests.drain import drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop() -> Iterator[FakeWooShop]:
    with FakeWooShop(consumer_key="ck_e2e", consumer_secret="cs_e2e", seed=11, initial_orders=0) as fake:
        yield fake


@pytest.fixture
def connected(shop: FakeWooShop, live_server: Any, settings: Any, capsys: Any) -> Store:
    settings.PUBLIC_URL = live_server.url
    code = main(
        [
            "store",
            "add",
            "--name",
            "E2E",
            "--url",
            shop.url,
            "--consumer-key",
            "ck_e2e",
            "--consumer-secret",
            "cs_e2e",
            "--auth",
            "query",
            "--json",
        ]
    )
    assert code == 0
    store_id = json.loads(capsys.readouterr().out)["id"]
    assert shop.flush()
    return Store.objects.get(pk=store_id)


def mirror_matches_shop(shop: FakeWooShop, ids: list[int]) -> None:
    mirrored = {o.external_id: o for o in Order.objects.all()}
    assert sorted(mirrored) == sorted(ids)
    for order_id in ids:
        truth = shop.get_order(order_id)
        mine = mirrored[order_id]
        assert (mine.status, mine.total, mine.currency) == (
            truth["status"],
            Decimal(truth["total"]),
            truth["currency"],
        )


def test_store_add_registers_every_webhook_and_answers_the_ping(
    connected: Store, shop: FakeWooShop, live_server: Any
) -> None:
    hooks = shop.webhooks
    assert sorted(h["topic"] for h in hooks) == sorted(WEBHOOK_TOPICS)
    assert {h["delivery_url"] for h in hooks} == {f"{live_server.url}/webhooks/woocommerce/{connected.pk}"}
    assert all(h["status"] == "active" for h in hooks)
    pings = [d for d in shop.deliveries if d.topic == "ping"]
    assert len(pings) == len(WEBHOOK_TOPICS)
    assert {d.status_code for d in pings} == {200}
    assert StoreWebhook.objects.filter(store=connected, state="active").count() == len(WEBHOOK_TOPICS)


def test_wrong_credentials_are_refused_and_nothing_is_stored(shop: FakeWooShop, capsys: Any) -> None:
    code = main(
        [
            "store",
            "add",
            "--name",
            "X",
            "--url",
            shop.url,
            "--consumer-key",
            "ck_e2e",
            "--consumer-secret",
            "wrong",
            "--auth",
            "query",
        ]
    )
    assert code == 2
    assert "shop_credentials_rejected" in capsys.readouterr().err
    assert not Store.objects.exists()
    assert shop.webhooks == []


def test_orders_flow_in_through_webhooks_despite_duplicates_and_reordering(connected: Store, shop: FakeWooShop) -> None:
    shop.faults.update({"duplicate_rate": 1.0, "reorder_rate": 0.5})
    ids = [shop.create_order()["id"] for _ in range(5)]
    shop.set_status(ids[0], "completed")
    shop.set_status(ids[1], "cancelled")
    shop.refund_order(ids[2], Decimal("1.00"), reason="scratch")
    assert shop.flush()
    drain()
    mirror_matches_shop(shop, ids)
    assert Order.objects.get(external_id=ids[2]).refunded_total == Decimal("1.00")


def test_a_dropped_webhook_is_repaired_by_reconciliation(connected: Store, shop: FakeWooShop) -> None:
    kept = shop.create_order()["id"]
    assert shop.flush()
    drain()
    shop.faults.update({"drop_rate": 1.0})
    lost = shop.create_order()["id"]
    shop.set_status(kept, "completed")
    assert shop.flush()
    drain()
    assert not Order.objects.filter(external_id=lost).exists()
    assert Order.objects.get(external_id=kept).status != "completed"
    result = reconcile_store(connected.pk)
    assert result.outcomes["created"] == 1
    assert result.outcomes["updated"] == 1
    mirror_matches_shop(shop, [kept, lost])
    # A second sweep finds nothing new to change.
    again = reconcile_store(connected.pk)
    assert again.outcomes.get("created", 0) == 0
    assert again.outcomes.get("updated", 0) == 0


def test_a_webhook_disabled_by_the_shop_is_noticed_and_re_enabled(
    connected: Store, shop: FakeWooShop, api_for: Any
) -> None:
    # Our receiver starts refusing (a rotated secret the shop does not know): WooCommerce disables
    # the webhook on the 7th consecutive failure and never redelivers.
    Store.objects.filter(pk=connected.pk).update(webhook_secret="rotated-without-telling-the-shop")
    from storeloop.inbox import views

    views._secrets.clear()
    ids = [shop.create_order()["id"] for _ in range(8)]
    assert shop.flush()
    created_hook = next(h for h in shop.webhooks if h["topic"] == "order.created")
    assert created_hook["status"] == "disabled"
    Store.objects.filter(pk=connected.pk).update(webhook_secret=connected.webhook_secret)
    views._secrets.clear()
    result = reconcile_store(connected.pk)
    assert "order.created" in result.webhooks_repaired
    assert next(h for h in shop.webhooks if h["topic"] == "order.created")["status"] == "active"
    mirror_matches_shop(shop, ids)
    health = api_for(connected).get("/api/v1/system/health").json()["stores"][0]
    hook = next(h for h in health["webhooks"] if h["topic"] == "order.created")
    assert (hook["state"], hook["last_problem"], hook["repairs"]) == ("active", "disabled", 1)
    # Deliveries flow again after the repair.
    new = shop.create_order()["id"]
    assert shop.flush()
    drain()
    assert Order.objects.filter(external_id=new).exists()


def test_reconcile_command(connected: Store, shop: FakeWooShop, capsys: Any) -> None:
    shop.faults.update({"drop_rate": 1.0})
    ids = [shop.create_order()["id"] for _ in range(3)]
    assert shop.flush()
    code = main(["store", "reconcile", "--store", str(connected.pk), "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["fetched"] == 3
    mirror_matches_shop(shop, ids)


def test_store_remove_deletes_our_webhooks_and_the_data(connected: Store, shop: FakeWooShop) -> None:
    shop.create_order()
    assert shop.flush()
    drain()
    assert Order.objects.count() == 1
    assert main(["store", "remove", "--store", str(connected.pk), "--yes"]) == 0
    assert shop.webhooks == []
    assert not Store.objects.exists()
    assert Order.objects.count() == 0
