"""Exact figures of a hand-built store, through the updater and the full recompute alike."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from storeloop.contacts.models import Contact
from storeloop.metrics.models import ContactMetrics, DailyMetrics, ProductMetrics
from storeloop.metrics.tests.builders import D1, D2, build_shop, metric_tables, order_payload, send, updater

pytestmark = pytest.mark.django_db


def contact_rows(store: Any) -> list[tuple[Any, ...]]:
    emails = dict(Contact.objects.filter(store=store).values_list("pk", "email"))
    return sorted(
        (emails[m.contact_id], m.currency, m.order_count, m.purchase_days, m.gross_e4, m.refunds_e4,
         m.net_e4, m.first_day_net_e4, m.first_order_at, m.last_order_at)
        for m in ContactMetrics.objects.filter(store=store)
    )  # fmt: skip


EXPECTED_CONTACTS = [
    ("ann@example.com", "EUR", 2, 2, 1_500_000, 200_000, 1_300_000, 1_000_000, D1, D2),
    ("ann@example.com", "USD", 1, 1, 300_000, 0, 300_000, 300_000, D2, D2),
    ("bob@example.com", "EUR", 1, 1, 100_000, 0, 100_000, 100_000, D2 + dt.timedelta(hours=5),
     D2 + dt.timedelta(hours=5)),
]  # fmt: skip

EXPECTED_DAILY = [
    # day, currency, orders, gross, refunds, new, returning
    (D1.date(), "EUR", 1, 1_000_000, 0, 1, 0),
    (D2.date(), "EUR", 2, 600_000, 200_000, 1, 1),
    (D2.date(), "USD", 1, 300_000, 0, 1, 0),
]

EXPECTED_PRODUCTS = [
    # product, currency, orders, units, revenue, refunds (20.00 × 40/50), buyers, repeat buyers
    (22, "USD", 1, 1, 250_000, 0, 1, 0),
    (93, "EUR", 3, 4, 1_280_000, 160_000, 2, 1),
]


def test_incremental_figures_are_exact(store: Any) -> None:
    build_shop(store)
    assert contact_rows(store) == EXPECTED_CONTACTS
    daily = DailyMetrics.objects.filter(store=store).order_by("day", "currency")
    assert [
        (d.day, d.currency, d.orders, d.gross_e4, d.refunds_e4, d.new_customers, d.returning_customers) for d in daily
    ] == EXPECTED_DAILY
    products = ProductMetrics.objects.filter(store=store).order_by("product_external_id")
    assert [
        (p.product_external_id, p.currency, p.orders, p.units, p.revenue_e4, p.refunds_e4, p.buyers,
         p.repeat_buyers)
        for p in products
    ] == EXPECTED_PRODUCTS  # fmt: skip


def test_full_recompute_gives_the_same_rows(store: Any) -> None:
    build_shop(store)
    incremental = metric_tables(store.pk)
    result = updater.recalculate_customer_metrics(store.pk)
    assert metric_tables(store.pk) == incremental
    assert contact_rows(store) == EXPECTED_CONTACTS
    assert (result.counted_orders, result.contacts, result.days, result.products) == (4, 3, 3, 2)


def test_recompute_from_scratch_matches(store: Any, other_store: Any) -> None:
    """Metrics wiped (e.g. orders imported by a backfill without updates): the recompute rebuilds
    them, and leaves other stores alone."""
    build_shop(store)
    build_shop(other_store)
    expected = metric_tables(store.pk)
    for model in (ContactMetrics, DailyMetrics, ProductMetrics):
        model.objects.filter(store=store).delete()
    others = metric_tables(other_store.pk)
    updater.recalculate_customer_metrics(store.pk)
    assert metric_tables(store.pk) == expected
    assert metric_tables(other_store.pk) == others


def test_an_order_leaving_the_counted_statuses_is_taken_out(store: Any) -> None:
    build_shop(store)
    send(store, order_payload(5, email="bob@example.com", status="cancelled", total="10.00",
                              lines=[(93, 1, "8.00")], created=D2 + dt.timedelta(hours=5),
                              modified=D2 + dt.timedelta(days=2)))  # fmt: skip
    assert [row[0:3] for row in contact_rows(store)] == [
        ("ann@example.com", "EUR", 2),
        ("ann@example.com", "USD", 1),
    ]
    product = ProductMetrics.objects.get(store=store, product_external_id=93)
    assert (product.orders, product.units, product.buyers, product.repeat_buyers) == (2, 3, 1, 1)
    day = DailyMetrics.objects.get(store=store, day=D2.date(), currency="EUR")
    assert (day.orders, day.new_customers, day.returning_customers) == (1, 0, 1)
    expected = metric_tables(store.pk)
    updater.recalculate_customer_metrics(store.pk)
    assert metric_tables(store.pk) == expected
