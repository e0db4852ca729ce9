from __future__ import annotations

from typing import Any

from django.db.models import Count

from storeloop.core.errors import NotFound
from storeloop.crm.models import CrmConnection, CrmSyncRecord
from storeloop.orders.models import Order
from storeloop.stores.models import Store


def connection_summaries(store_id: int) -> list[dict[str, Any]]:
    out = []
    for connection in CrmConnection.objects.filter(store_id=store_id).order_by("provider"):
        counts = dict(CrmSyncRecord.objects.filter(connection=connection).values_list("state").annotate(n=Count("id")))
        out.append({
            "provider": connection.provider,
            "status": connection.status,
            "broken_reason": connection.broken_reason,
            "records": counts,
        })  # fmt: skip
    return out


def order_sync_for_store(*, store: Store, order_id: int) -> tuple[Order, list[CrmSyncRecord]]:
    order = Order.objects.filter(store=store, pk=order_id).first()
    if order is None:
        raise NotFound(f"no order {order_id} in this store", code="order_not_found")
    records = list(CrmSyncRecord.objects.filter(order=order).select_related("connection").prefetch_related("history"))
    return order, records
