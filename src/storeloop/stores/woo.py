"""The WooCommerce client for a store, built from its (decrypted) credentials."""

from __future__ import annotations

import httpx
from django.conf import settings

from storeloop.integrations.woocommerce.client import WooCommerceClient
from storeloop.stores.models import Store

WEBHOOK_TOPICS = (
    "order.created",
    "order.updated",
    "order.deleted",
    "order.restored",
    "customer.created",
    "customer.updated",
    "product.created",
    "product.updated",
    "product.deleted",
)


def client_for(store: Store) -> WooCommerceClient:
    return WooCommerceClient(
        store.url,
        store.consumer_key,
        store.consumer_secret,
        auth=store.auth_mode,  # type: ignore[arg-type]
        timeout=httpx.Timeout(settings.WOOCOMMERCE_TIMEOUT_SECONDS, connect=5.0),
    )


def delivery_url(store: Store) -> str:
    return f"{settings.PUBLIC_URL}/webhooks/woocommerce/{store.pk}"
