"""Applying the shop's snapshots to the mirror, newest version wins.

Every path that writes orders (webhook, reconciliation, backfill) goes through ``apply_order``,
so the version rule lives in one place: a snapshot whose ``date_modified_gmt`` is older than the
stored one is ignored; an identical one changes nothing.
"""

from __future__ import annotations

import enum
from decimal import Decimal

from django.utils import timezone

from storeloop.contacts.services import PersonData, resolve_contact
from storeloop.integrations.woocommerce.models import WooCustomer, WooOrder, WooProduct
from storeloop.orders.hooks import on_order_changed
from storeloop.orders.models import Order, OrderLine, OrderRefund, Product
from storeloop.orders.prepare import COD_METHODS as COD_METHODS  # re-exported: callers import them from here
from storeloop.orders.prepare import payload_hash as payload_hash
from storeloop.stores.models import Store


class Applied(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    STALE = "stale"
    DELETED = "deleted"
    MISSING = "missing"


def person_from_order(order: WooOrder) -> PersonData:
    billing = order.billing
    return PersonData.from_raw(
        email=billing.email,
        phone=billing.phone,
        country=billing.country,
        woo_customer_id=order.customer_id or None,
        first_name=billing.first_name,
        last_name=billing.last_name,
    )


def apply_order(store: Store, snapshot: WooOrder) -> Applied:
    """Upsert one order snapshot. Call inside a transaction."""
    digest = payload_hash(snapshot.raw)
    existing = Order.objects.select_for_update().filter(store=store, external_id=snapshot.id).first()
    if existing is not None:
        if existing.date_modified > snapshot.date_modified_gmt:
            return Applied.STALE
        if existing.payload_hash == digest and existing.deleted_at is None:
            return Applied.UNCHANGED
    contact = resolve_contact(store, person_from_order(snapshot))
    refunded = sum((abs(r.total) for r in snapshot.refunds), Decimal(0))
    fields = {
        "number": snapshot.number,
        "contact": contact,
        "woo_customer_id": snapshot.customer_id,
        "status": snapshot.status,
        "currency": snapshot.currency,
        "total": snapshot.total,
        "total_tax": snapshot.total_tax,
        "shipping_total": snapshot.shipping_total,
        "discount_total": snapshot.discount_total,
        "refunded_total": refunded,
        "payment_method": snapshot.payment_method,
        "payment_method_title": snapshot.payment_method_title,
        "is_cod": snapshot.payment_method in COD_METHODS,
        "date_created": snapshot.date_created_gmt,
        "date_modified": snapshot.date_modified_gmt,
        "date_paid": snapshot.date_paid_gmt,
        "date_completed": snapshot.date_completed_gmt,
        "billing": snapshot.raw.get("billing") or {},
        "shipping": snapshot.raw.get("shipping") or {},
        "meta_data": list(snapshot.meta_data),
        "customer_note": snapshot.customer_note,
        "payload_hash": digest,
        "deleted_at": None,
    }
    previous_status = None
    if existing is None:
        order = Order.objects.create(store=store, external_id=snapshot.id, **fields)
        outcome = Applied.CREATED
    else:
        previous_status = "deleted" if existing.deleted_at is not None else existing.status
        for name, value in fields.items():
            setattr(existing, name, value)
        existing.save()
        order = existing
        outcome = Applied.UPDATED
    _replace_lines(store, order, snapshot)
    _replace_refunds(order, snapshot)
    on_order_changed(order, previous_status)
    return outcome


def _replace_lines(store: Store, order: Order, snapshot: WooOrder) -> None:
    product_ids = {line.product_id for line in snapshot.line_items if line.product_id}
    products = dict(Product.objects.filter(store=store, external_id__in=product_ids).values_list("external_id", "id"))
    OrderLine.objects.filter(order=order).delete()
    OrderLine.objects.bulk_create(
        [
            OrderLine(
                order=order,
                external_id=line.id,
                product_id=products.get(line.product_id),
                product_external_id=line.product_id,
                variation_external_id=line.variation_id,
                name=line.name[:500],
                sku=(line.sku or "")[:200],
                quantity=line.quantity,
                subtotal=line.subtotal,
                total=line.total,
                total_tax=line.total_tax,
            )
            for line in snapshot.line_items
        ]
    )


def _replace_refunds(order: Order, snapshot: WooOrder) -> None:
    OrderRefund.objects.filter(order=order).delete()
    OrderRefund.objects.bulk_create(
        [
            OrderRefund(order=order, external_id=r.id, reason=(r.reason or "")[:500], amount=abs(r.total))
            for r in snapshot.refunds
        ]
    )


def apply_order_deleted(store: Store, external_id: int) -> Applied:
    """A permanent deletion on the shop (``order.deleted``): keep the row, mark it deleted.

    Keeping it preserves the customer's history and totals; a later ``order.restored`` snapshot is
    newer and clears the mark through ``apply_order``.
    """
    order = Order.objects.select_for_update().filter(store=store, external_id=external_id).first()
    if order is not None and order.deleted_at is None:
        previous_status = order.status
        order.deleted_at = timezone.now()
        order.save(update_fields=["deleted_at", "updated_at"])
        on_order_changed(order, previous_status)
        return Applied.DELETED
    if Order.objects.filter(store=store, external_id=external_id).exists():
        return Applied.UNCHANGED
    return Applied.MISSING


def apply_product(store: Store, snapshot: WooProduct) -> Applied:
    existing = Product.objects.select_for_update().filter(store=store, external_id=snapshot.id).first()
    if (
        existing is not None
        and existing.date_modified is not None
        and snapshot.date_modified_gmt is not None
        and existing.date_modified > snapshot.date_modified_gmt
    ):
        return Applied.STALE
    fields = {
        "name": snapshot.name[:500],
        "sku": (snapshot.sku or "")[:200],
        "product_type": snapshot.type[:40],
        "status": snapshot.status[:40],
        "price": snapshot.price,
        "date_modified": snapshot.date_modified_gmt,
        "deleted_at": None,
    }
    _, created = Product.objects.update_or_create(store=store, external_id=snapshot.id, defaults=fields)
    return Applied.CREATED if created else Applied.UPDATED


def apply_product_deleted(store: Store, external_id: int) -> Applied:
    updated = Product.objects.filter(store=store, external_id=external_id, deleted_at__isnull=True).update(
        deleted_at=timezone.now()
    )
    return Applied.DELETED if updated else Applied.MISSING


def apply_customer(store: Store, snapshot: WooCustomer) -> Applied:
    billing = snapshot.billing
    person = PersonData.from_raw(
        email=snapshot.email or billing.email,
        phone=billing.phone,
        country=billing.country,
        woo_customer_id=snapshot.id,
        first_name=snapshot.first_name or billing.first_name,
        last_name=snapshot.last_name or billing.last_name,
    )
    contact = resolve_contact(store, person)
    return Applied.UPDATED if contact is not None else Applied.UNCHANGED
