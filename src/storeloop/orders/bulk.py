"""The mirror's bulk path for the historical backfill: one batch of snapshots, a handful of queries.

Same rules as ``mirror.apply_order`` — newest ``date_modified_gmt`` wins, identical payloads change
nothing, one contact per identity — but set-based: existing versions are read in one query, new
contacts, orders, lines and refunds are written with bulk inserts. Live webhooks may write the same
orders meanwhile; rows are locked (PostgreSQL) or the database is (SQLite IMMEDIATE), and any
conflict sends the batch through the per-order path instead, which is always correct.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from storeloop.contacts.models import Contact, ContactIdentity
from storeloop.contacts.services import PersonData, identities_held, match_keys
from storeloop.core.bulk import insert_rows
from storeloop.integrations.woocommerce.models import WooOrder
from storeloop.orders.mirror import COD_METHODS, Applied, apply_order, payload_hash, person_from_order
from storeloop.orders.models import Order, OrderLine, OrderRefund, Product
from storeloop.stores.models import Store

logger = logging.getLogger("storeloop.bulk")
Kind = ContactIdentity.Kind


def apply_orders_bulk(store: Store, snapshots: Sequence[WooOrder]) -> Counter[str]:
    """Apply a batch of order snapshots; returns outcome counts. Runs its own transaction."""
    outcomes: Counter[str] = Counter()
    latest: dict[int, WooOrder] = {}
    for snap in snapshots:  # a batch may hold the same order twice (page overlap): keep the newest
        kept = latest.get(snap.id)
        if kept is None or snap.date_modified_gmt >= kept.date_modified_gmt:
            latest[snap.id] = snap
    outcomes[Applied.UNCHANGED] += len(snapshots) - len(latest)
    try:
        with transaction.atomic():
            _apply(store, list(latest.values()), outcomes)
    except IntegrityError:
        # A webhook created one of these orders or identities between our read and our write.
        logger.info("bulk batch of store %s raced with live writes; applying order by order", store.pk)
        outcomes = Counter({Applied.UNCHANGED: len(snapshots) - len(latest)})
        for snap in latest.values():
            with transaction.atomic():
                outcomes[str(apply_order(store, snap))] += 1
    return outcomes


def _apply(store: Store, snapshots: list[WooOrder], outcomes: Counter[str]) -> None:
    existing = {
        row["external_id"]: row
        for row in Order.objects.select_for_update()
        .filter(store=store, external_id__in=[s.id for s in snapshots])
        .values("id", "external_id", "date_modified", "payload_hash", "deleted_at")
    }
    todo: list[tuple[WooOrder, str]] = []
    for snap in snapshots:
        digest = payload_hash(snap.raw)
        row = existing.get(snap.id)
        if row is not None and row["date_modified"] > snap.date_modified_gmt:
            outcomes[Applied.STALE] += 1
        elif row is not None and row["payload_hash"] == digest and row["deleted_at"] is None:
            outcomes[Applied.UNCHANGED] += 1
        else:
            todo.append((snap, digest))
    if not todo:
        return
    contacts = _resolve_contacts(store, [person_from_order(s) for s, _ in todo])
    products = dict(
        Product.objects.filter(
            store=store,
            external_id__in={li.product_id for s, _ in todo for li in s.line_items if li.product_id},
        ).values_list("external_id", "id")
    )
    now = timezone.now()
    new_rows: list[tuple[Any, ...]] = []
    changed: list[Order] = []
    for (snap, digest), contact_id in zip(todo, contacts, strict=True):
        fields = _order_fields(snap, digest, contact_id)
        row = existing.get(snap.id)
        if row is None:
            new_rows.append((store.pk, snap.id, now, now, *(fields[name] for name in _ORDER_FIELDS)))
        else:
            changed.append(Order(pk=row["id"], store=store, external_id=snap.id, **fields))
    insert_rows(Order, ["store_id", "external_id", "created_at", "updated_at", *_ORDER_FIELDS], new_rows)
    if changed:
        Order.objects.bulk_update(changed, [*_ORDER_FIELDS, "updated_at"], batch_size=500)
        OrderLine.objects.filter(order_id__in=[o.pk for o in changed]).delete()
        OrderRefund.objects.filter(order_id__in=[o.pk for o in changed]).delete()
    outcomes[Applied.CREATED] += len(new_rows)
    outcomes[Applied.UPDATED] += len(changed)
    by_external = {o.external_id: o.pk for o in changed}
    if new_rows:
        by_external.update(
            Order.objects.filter(store=store, external_id__in=[r[1] for r in new_rows]).values_list("external_id", "id")
        )
    lines: list[tuple[Any, ...]] = []
    refunds: list[tuple[Any, ...]] = []
    for snap, _ in todo:
        order_pk = by_external[snap.id]
        lines.extend(
            (order_pk, li.id, products.get(li.product_id), li.product_id, li.variation_id, li.name[:500],
             (li.sku or "")[:200], li.quantity, li.subtotal, li.total, li.total_tax)
            for li in snap.line_items
        )  # fmt: skip
        refunds.extend((order_pk, r.id, (r.reason or "")[:500], abs(r.total)) for r in snap.refunds)
    insert_rows(OrderLine, _LINE_FIELDS, lines)
    insert_rows(OrderRefund, ["order_id", "external_id", "reason", "amount"], refunds)


_LINE_FIELDS = [
    "order_id", "external_id", "product_id", "product_external_id", "variation_external_id", "name", "sku",
    "quantity", "subtotal", "total", "total_tax",
]  # fmt: skip


_ORDER_FIELDS = [
    "number", "contact_id", "woo_customer_id", "status", "currency", "total", "total_tax", "shipping_total",
    "discount_total", "refunded_total", "payment_method", "payment_method_title", "is_cod", "date_created",
    "date_modified", "date_paid", "date_completed", "billing", "shipping", "meta_data", "customer_note",
    "payload_hash", "deleted_at",
]  # fmt: skip


def _order_fields(snap: WooOrder, digest: str, contact_id: int | None) -> dict[str, Any]:
    return {
        "number": snap.number,
        "contact_id": contact_id,
        "woo_customer_id": snap.customer_id,
        "status": snap.status,
        "currency": snap.currency,
        "total": snap.total,
        "total_tax": snap.total_tax,
        "shipping_total": snap.shipping_total,
        "discount_total": snap.discount_total,
        "refunded_total": sum((abs(r.total) for r in snap.refunds), Decimal(0)),
        "payment_method": snap.payment_method,
        "payment_method_title": snap.payment_method_title,
        "is_cod": snap.payment_method in COD_METHODS,
        "date_created": snap.date_created_gmt,
        "date_modified": snap.date_modified_gmt,
        "date_paid": snap.date_paid_gmt,
        "date_completed": snap.date_completed_gmt,
        "billing": snap.raw.get("billing") or {},
        "shipping": snap.raw.get("shipping") or {},
        "meta_data": list(snap.meta_data),
        "customer_note": snap.customer_note,
        "payload_hash": digest,
        "deleted_at": None,
    }


def _resolve_contacts(store: Store, people: list[PersonData]) -> list[int | None]:
    """Contact id for each person, creating missing contacts in bulk (same identity rule)."""
    held = identities_held(store, [pair for p in people for pair in p.identities()])
    merged = dict(
        Contact.objects.filter(store=store, pk__in=set(held.values()), merged_into__isnull=False).values_list(
            "pk", "merged_into_id"
        )
    )
    # People of this batch not known yet: group them by shared match keys (a guest and a
    # registered checkout with one email are one person), one new contact per group.
    result: list[int | None] = []
    pending: dict[tuple[str, str], int] = {}  # match key -> index into new_people
    new_people: list[PersonData] = []
    slots: list[tuple[str, int]] = []  # ("known", contact_id) | ("new", group index) | ("none", 0)
    for person in people:
        keys = match_keys(person)
        known = next((held[k] for k in keys if k in held), None)
        if known is not None:
            slots.append(("known", merged.get(known, known)))
            continue
        group = next((pending[k] for k in keys if k in pending), None)
        if group is None and keys:
            group = len(new_people)
            new_people.append(person)
        if group is None:
            slots.append(("none", 0))
            continue
        for key in keys:
            pending.setdefault(key, group)
        slots.append(("new", group))
    created = Contact.objects.bulk_create(
        [
            Contact(
                store=store,
                email=p.email or "",
                phone=p.phone or "",
                woo_customer_id=p.woo_customer_id,
                first_name=p.first_name,
                last_name=p.last_name,
                country=p.country,
            )
            for p in new_people
        ],
        batch_size=500,
    )
    identities: list[tuple[Any, ...]] = []
    claimed: set[tuple[str, str]] = set(held)
    now = timezone.now()
    for person, contact in zip(new_people, created, strict=True):
        for pair in person.identities():
            if pair not in claimed:  # an identity belongs to the first contact that claims it
                claimed.add(pair)
                identities.append((store.pk, contact.pk, pair[0], pair[1], now))
    # Plain insert: a conflict means a live writer created one of these identities meanwhile, and
    # the IntegrityError sends the whole batch down the per-order path.
    insert_rows(ContactIdentity, ["store_id", "contact_id", "kind", "value", "created_at"], identities)
    for kind, pk in slots:
        if kind == "known":
            result.append(pk)
        elif kind == "new":
            result.append(created[pk].pk)
        else:
            result.append(None)
    return result
