"""The handler table: (source, topic) → the function that applies a delivery.

Handlers are named by dotted path so the inbox stays a generic mechanism and domain apps stay
free of inbox imports. A topic missing here is stored as ``ignored``, never an error.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from django.utils.module_loading import import_string

HANDLERS: dict[tuple[str, str], str] = {
    ("woocommerce", "order.created"): "storeloop.orders.webhooks.handle_order_snapshot",
    ("woocommerce", "order.updated"): "storeloop.orders.webhooks.handle_order_snapshot",
    ("woocommerce", "order.restored"): "storeloop.orders.webhooks.handle_order_snapshot",
    ("woocommerce", "order.deleted"): "storeloop.orders.webhooks.handle_order_deleted",
    ("woocommerce", "product.created"): "storeloop.orders.webhooks.handle_product_snapshot",
    ("woocommerce", "product.updated"): "storeloop.orders.webhooks.handle_product_snapshot",
    ("woocommerce", "product.restored"): "storeloop.orders.webhooks.handle_product_snapshot",
    ("woocommerce", "product.deleted"): "storeloop.orders.webhooks.handle_product_deleted",
    ("woocommerce", "customer.created"): "storeloop.orders.webhooks.handle_customer_snapshot",
    ("woocommerce", "customer.updated"): "storeloop.orders.webhooks.handle_customer_snapshot",
    ("twilio", "message.status"): "storeloop.messaging.inbound.handlers.handle_twilio_status",
    ("twilio", "message.inbound"): "storeloop.messaging.inbound.handlers.handle_twilio_inbound",
    ("whatsapp", "messages"): "storeloop.messaging.inbound.handlers.handle_whatsapp_messages",
    ("email", "events"): "storeloop.messaging.inbound.handlers.handle_email_events",
}

Handler = Callable[[Any, bytes], object]


@cache
def _load(path: str) -> Handler:
    handler: Handler = import_string(path)
    return handler


def handler_for(source: str, topic: str) -> Handler | None:
    path = HANDLERS.get((source, topic))
    return _load(path) if path else None
