"""Reads of orders, always scoped to one store."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from storeloop.core.errors import NotFound
from storeloop.orders.models import Order
from storeloop.stores.models import Store


def order_list(
    *,
    store: Store,
    external_id: int | None = None,
    status: str | None = None,
    modified_after: dt.datetime | None = None,
) -> QuerySet[Order]:
    qs = (
        Order.objects.filter(store=store)
        .select_related("contact")
        .prefetch_related("lines")
        .order_by("-date_modified", "-id")
    )
    if external_id is not None:
        qs = qs.filter(external_id=external_id)
    if status:
        qs = qs.filter(status=status)
    if modified_after is not None:
        qs = qs.filter(date_modified__gt=modified_after)
    return qs


def order_get_for_store(*, store: Store, order_id: int) -> Order:
    order = (
        Order.objects.filter(store=store, pk=order_id)
        .select_related("contact")
        .prefetch_related("lines", "refunds")
        .first()
    )
    if order is None:
        raise NotFound(f"no order {order_id} in this store", code="order_not_found")
    return order
