"""Inbox handlers for WooCommerce order, product and customer topics."""

from __future__ import annotations

import orjson

from storeloop.core.errors import TerminalError
from storeloop.integrations.woocommerce.models import parse_customer, parse_order, parse_product
from storeloop.orders.mirror import (
    Applied,
    apply_customer,
    apply_order,
    apply_order_deleted,
    apply_product,
    apply_product_deleted,
)
from storeloop.stores.models import Store


def _json(body: bytes) -> dict[str, object]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TerminalError(f"delivery body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TerminalError("delivery body is not a JSON object")
    return data


def _deleted_id(body: bytes) -> int:
    value = _json(body).get("id")
    if not isinstance(value, int):
        raise TerminalError("deletion delivery without an integer id")
    return value


def handle_order_snapshot(store: Store, body: bytes) -> Applied:
    return apply_order(store, parse_order(_json(body)))


def handle_order_deleted(store: Store, body: bytes) -> Applied:
    return apply_order_deleted(store, _deleted_id(body))


def handle_product_snapshot(store: Store, body: bytes) -> Applied:
    return apply_product(store, parse_product(_json(body)))


def handle_product_deleted(store: Store, body: bytes) -> Applied:
    return apply_product_deleted(store, _deleted_id(body))


def handle_customer_snapshot(store: Store, body: bytes) -> Applied:
    return apply_customer(store, parse_customer(_json(body)))
