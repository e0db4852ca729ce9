"""Order events as the shop sends them, applied through the mirror, and metric table snapshots."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.db import models, transaction

from storeloop.integrations.woocommerce.models import parse_order
from storeloop.metrics.models import (
    ContactMetrics,
    DailyMetrics,
    OrderContribution,
    OrderLineContribution,
    ProductMetrics,
)
from storeloop.metrics.services import OrderMetricsUpdater
from storeloop.orders.mirror import apply_order, apply_order_deleted
from storeloop.orders.models import Order

ORDER_JSON = Path(__file__).resolve().parents[4] / "tests" / "fixtures" / "woocommerce" / "order.json"
BASE: dict[str, Any] = json.loads(ORDER_JSON.read_text())
T0 = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
updater = OrderMetricsUpdater()


def wc_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def order_payload(
    external_id: int,
    *,
    email: str = "ann@example.com",
    status: str = "processing",
    currency: str = "EUR",
    total: str = "29.35",
    lines: Sequence[tuple[int, int, str]] = ((93, 2, "6.00"),),
    refunds: Sequence[str] = (),
    created: dt.datetime = T0,
    modified: dt.datetime | None = None,
) -> dict[str, Any]:
    """A WooCommerce order (shaped like tests/fixtures/woocommerce/order.json).

    ``lines`` are (product id, quantity, total); ``refunds`` positive amounts.
    """
    raw = copy.deepcopy(BASE)
    template = raw["line_items"][0]
    raw.update(
        id=external_id,
        number=str(external_id),
        status=status,
        currency=currency,
        total=total,
        date_created_gmt=wc_time(created),
        date_modified_gmt=wc_time(modified or created),
    )
    raw["billing"] = {**raw["billing"], "email": email, "phone": ""}
    raw["line_items"] = [
        {**template, "id": external_id * 100 + i, "product_id": product, "variation_id": 0,
         "quantity": quantity, "subtotal": amount, "total": amount}
        for i, (product, quantity, amount) in enumerate(lines)
    ]  # fmt: skip
    raw["refunds"] = [
        {"id": external_id * 100 + i, "reason": "", "total": f"-{amount}"} for i, amount in enumerate(refunds)
    ]
    return raw


def send(store: Any, payload: dict[str, Any]) -> Order:
    """Apply a snapshot through the mirror and update the metrics, as the lead's call site does."""
    with transaction.atomic():
        apply_order(store, parse_order(payload))
        order = Order.objects.get(store=store, external_id=payload["id"])
        updater.update_order_metrics(order.pk)
    return order


def send_deleted(store: Any, external_id: int) -> None:
    with transaction.atomic():
        apply_order_deleted(store, external_id)
        order = Order.objects.filter(store=store, external_id=external_id).first()
        if order is not None:
            updater.update_order_metrics(order.pk)


def _rows(model: type[models.Model], store_id: int) -> list[tuple[Any, ...]]:
    names = [f.attname for f in model._meta.concrete_fields if f.name != "id"]
    return sorted(model._default_manager.filter(store_id=store_id).values_list(*names))


def metric_tables(store_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every derived row of the store, without surrogate ids."""
    return {
        model.__name__: _rows(model, store_id)
        for model in (
            OrderContribution,
            OrderLineContribution,
            ContactMetrics,
            DailyMetrics,
            ProductMetrics,
        )
    }


D1 = T0  # Monday 5 January 2026, 10:00 UTC
D2 = T0 + dt.timedelta(days=7)


def build_shop(store: Any) -> None:
    """Ann buys in EUR twice (one partly refunded) and once in USD, and has a cancelled order;
    Bob has an on-hold order and one deleted on the shop."""
    send(store, order_payload(1, total="100.00", lines=[(93, 2, "80.00")], created=D1))
    send(store, order_payload(2, status="completed", total="50.00", lines=[(93, 1, "40.00")],
                              refunds=["20.00"], created=D2))  # fmt: skip
    send(store, order_payload(3, currency="USD", total="30.00", lines=[(22, 1, "25.00")], created=D2))
    send(store, order_payload(4, status="cancelled", total="999.00", created=D2 + dt.timedelta(days=1)))
    bob = "bob@example.com"
    send(store, order_payload(5, email=bob, status="on-hold", total="10.00", lines=[(93, 1, "8.00")],
                              created=D2 + dt.timedelta(hours=5)))  # fmt: skip
    send(store, order_payload(6, email=bob, total="70.00", lines=[(93, 7, "70.00")], created=D1))
    send_deleted(store, 6)
