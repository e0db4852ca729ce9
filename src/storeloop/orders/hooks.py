"""What follows an order change, in the same transaction as the change.

Called by the mirror for every order event (webhook, reconciliation), so no writer can forget it:
the contact's metrics are brought up to date, and the order is queued for the CRMs (the push
itself happens after commit, in the drain task).
"""

from __future__ import annotations

from storeloop.orders.models import Order


def on_order_changed(order: Order, previous_status: str | None) -> None:
    from storeloop.crm.services import OrderSyncService, mark_orders_changed
    from storeloop.metrics.services import OrderMetricsUpdater

    OrderMetricsUpdater().update_order_metrics(order.pk)
    status = "deleted" if order.deleted_at is not None else order.status
    if previous_status is not None and previous_status != status:
        OrderSyncService().handle_status_change(order.pk, previous_status, status)
    else:
        mark_orders_changed(order.store_id, [order.pk])
