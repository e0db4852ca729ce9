"""The incremental path: duplicates, reordering, moves between contacts, and its equality with
the full recompute under random event sequences (property test)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storeloop.contacts.models import Contact
from storeloop.contacts.services import merge_contacts
from storeloop.metrics.models import ContactMetrics, DailyMetrics, ProductMetrics
from storeloop.metrics.tests.builders import (
    T0,
    metric_tables,
    order_payload,
    send,
    send_deleted,
    updater,
)
from storeloop.orders.models import Order

pytestmark = pytest.mark.django_db

AS_OF = T0 + dt.timedelta(days=30)


def portable(store: Any) -> dict[str, list[tuple[Any, ...]]]:
    """The aggregates with contacts named by email, comparable across stores."""
    emails = dict(Contact.objects.filter(store=store).values_list("pk", "email"))
    fields = ["currency", "order_count", "purchase_days", "gross_e4", "refunds_e4", "net_e4",
              "first_day_net_e4", "first_order_at", "last_order_at", "segment"]  # fmt: skip
    return {
        "contacts": sorted(
            (emails[row[0]], *row[1:])
            for row in ContactMetrics.objects.filter(store=store).values_list("contact_id", *fields)
        ),
        "daily": sorted(
            DailyMetrics.objects.filter(store=store).values_list(
                "day", "currency", "orders", "gross_e4", "refunds_e4", "new_customers", "returning_customers"
            )
        ),
        "products": sorted(
            ProductMetrics.objects.filter(store=store).values_list(
                "product_external_id", "currency", "orders", "units", "revenue_e4", "refunds_e4", "buyers",
                "repeat_buyers",
            )
        ),
    }  # fmt: skip


def history() -> list[dict[str, Any]]:
    """Successive snapshots of three orders: created, paid, refunded, moved to another email."""
    later = [T0 + dt.timedelta(minutes=m) for m in range(10)]
    return [
        order_payload(1, status="pending", total="40.00", lines=[(7, 1, "40.00")], modified=later[0]),
        order_payload(1, total="40.00", lines=[(7, 1, "40.00")], modified=later[1]),
        order_payload(1, status="completed", total="40.00", lines=[(7, 1, "40.00")], refunds=["15.00"],
                      modified=later[2]),
        order_payload(2, total="12.50", lines=[(7, 2, "10.00"), (8, 1, "2.50")],
                      created=T0 + dt.timedelta(days=3), modified=later[3]),
        order_payload(2, email="bea@example.com", total="12.50", lines=[(7, 2, "10.00"), (8, 1, "2.50")],
                      created=T0 + dt.timedelta(days=3), modified=later[4]),
        order_payload(3, currency="USD", total="9.99", lines=[(8, 1, "9.99")], modified=later[5]),
    ]  # fmt: skip


def test_duplicates_and_reordering_give_the_same_figures(store: Any, other_store: Any) -> None:
    snapshots = history()
    for snapshot in snapshots:
        send(store, snapshot)
    shuffled = snapshots * 2
    random.Random(4).shuffle(shuffled)
    for snapshot in shuffled:
        send(other_store, snapshot)
    assert portable(other_store) == portable(store)
    assert portable(store)["contacts"][0][:4] == ("ann@example.com", "EUR", 1, 1)  # order 2 moved to Bea


def test_an_unchanged_order_writes_nothing(store: Any) -> None:
    order = send(store, history()[2])
    with CaptureQueriesContext(connection) as queries:
        updater.update_order_metrics(order.pk)
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    # the order, its stored and recomputed contributions (and the store lock on PostgreSQL)
    assert statements.count("SELECT") == len(statements) <= 6


def test_a_merge_moves_the_figures_to_the_survivor(store: Any) -> None:
    for snapshot in history():
        send(store, snapshot)
    ann = Contact.objects.get(store=store, email="ann@example.com")
    bea = Contact.objects.get(store=store, email="bea@example.com")
    merge_contacts(store=store, source_id=bea.pk, target_id=ann.pk, reason="same person", actor="test")
    with transaction.atomic():
        updater.update_contact_metrics(bea.pk)
        updater.update_contact_metrics(ann.pk, store_id=store.pk)
    assert not ContactMetrics.objects.filter(contact=bea).exists()
    assert ContactMetrics.objects.get(contact=ann, currency="EUR").order_count == 2
    rows = metric_tables(store.pk)
    updater.recalculate_customer_metrics(store.pk)
    assert metric_tables(store.pk) == rows


# --- property: any event sequence, incremental == full recompute ----------------------------------

EMAILS = [f"p{i}@example.com" for i in range(6)]
line = st.tuples(st.sampled_from([11, 12, 13]), st.integers(1, 3), st.integers(0, 5000))
upsert = st.fixed_dictionaries(
    {
        "kind": st.just("upsert"),
        "order": st.integers(1, 5),
        "email": st.sampled_from(EMAILS),
        "status": st.sampled_from(["processing", "completed", "on-hold", "refunded", "cancelled", "pending"]),
        "currency": st.sampled_from(["EUR", "USD"]),
        "day": st.integers(0, 4),
        "hour": st.sampled_from([9, 15]),
        "lines": st.lists(line, max_size=3),
        "total": st.sampled_from([2500, 9999]),  # apart from the lines: a line change alone
        "refund": st.sampled_from([0, 0, 500, 2000]),
    }
)
event = st.one_of(
    upsert,
    # an order updated on the shop: one aspect of an earlier snapshot changes
    st.fixed_dictionaries(
        {
            "kind": st.just("edit"),
            "pick": st.integers(0, 50),
            "field": st.sampled_from(["lines", "status", "refund", "email", "currency", "day", "total"]),
            "draw": upsert,
        }
    ),
    st.fixed_dictionaries({"kind": st.just("delete"), "order": st.integers(1, 5)}),
    st.fixed_dictionaries({"kind": st.just("replay"), "pick": st.integers(0, 50)}),
    st.fixed_dictionaries({"kind": st.just("refresh")}),
)


def _cents(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


def seed_store(store: Any) -> None:
    """Six customers in each currency and RFM thresholds, so updates are scored."""
    for i, email in enumerate(EMAILS):
        for j, currency in enumerate(["EUR", "USD"]):
            send(store, order_payload(100 + 2 * i + j, email=email, currency=currency, total=_cents(1000 * (i + 1)),
                                      lines=[(11, 1, "5.00")], created=T0 - dt.timedelta(days=i + 1)))  # fmt: skip
    updater.refresh_store_models(store.pk, as_of=AS_OF)


def play(store: Any, events: list[dict[str, Any]]) -> None:
    sent: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (event, the payload sent for it)
    for n, e in enumerate(events):
        if e["kind"] == "edit":
            e = {**sent[e["pick"] % len(sent)][0], e["field"]: e["draw"][e["field"]]} if sent else e["draw"]
        if e["kind"] in ("upsert", "edit"):
            payload = order_payload(
                e["order"], email=e["email"], status=e["status"], currency=e["currency"],
                total=_cents(e["total"]), lines=[(p, q, _cents(a)) for p, q, a in e["lines"]],
                refunds=[_cents(e["refund"])] if e["refund"] else [],
                created=T0 + dt.timedelta(days=e["day"], hours=e["hour"] - 10),
                modified=T0 + dt.timedelta(days=10, minutes=n),
            )  # fmt: skip
            sent.append((e, payload))
            send(store, payload)
        elif e["kind"] == "delete":
            send_deleted(store, e["order"])
        elif e["kind"] == "replay" and sent:
            send(store, sent[e["pick"] % len(sent)][1])  # a duplicate, or stale after a newer one
        elif e["kind"] == "refresh":
            updater.refresh_store_models(store.pk, as_of=AS_OF + dt.timedelta(minutes=n))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event, min_size=1, max_size=12))
def test_incremental_updates_equal_the_full_recompute(make_store: Any, events: list[dict[str, Any]]) -> None:
    store = make_store()  # a fresh store per example: stores share nothing
    seed_store(store)
    play(store, events)
    incremental = metric_tables(store.pk)
    updater.recalculate_customer_metrics(store.pk)
    assert metric_tables(store.pk) == incremental
    assert Order.objects.filter(store=store).count() >= 12
