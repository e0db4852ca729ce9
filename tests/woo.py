"""Captured WooCommerce payloads and a signed-delivery helper for tests."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
from pathlib import Path
from typing import Any

import orjson

FIXTURES = Path(__file__).parent / "fixtures" / "woocommerce"
_delivery_ids = itertools.count(1)


def order_payload(**overrides: Any) -> dict[str, Any]:
    """The documented v3 order example, with fields overridden (``billing`` is merged)."""
    data: dict[str, Any] = json.loads((FIXTURES / "order.json").read_text())
    billing = overrides.pop("billing", None)
    data.update(copy.deepcopy(overrides))
    if billing:
        data["billing"] = {**data["billing"], **billing}
    return data


def sign(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def delivery_headers(
    secret: str, body: bytes, topic: str = "order.updated", delivery_id: str | None = None
) -> dict[str, str]:
    resource, _, event = topic.partition(".")
    return {
        "X-WC-Webhook-Source": "https://shop.example/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": sign(secret, body),
        "X-WC-Webhook-ID": "12",
        "X-WC-Webhook-Delivery-ID": delivery_id or f"d-{next(_delivery_ids)}",
    }


def body_of(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload)
