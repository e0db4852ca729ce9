from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from tests.woo import order_payload

from storeloop.integrations.woocommerce.models import parse_order
from storeloop.orders.mirror import apply_order
from storeloop.orders.models import Order


@pytest.fixture
def zoho() -> Iterator[Any]:
    from storeloop.integrations.zoho.fake import FakeZoho

    with FakeZoho() as fake:
        fake.faults.token_mint_limit = 0
        yield fake


@pytest.fixture
def mirror_order(store: Any) -> Any:
    """Apply an order snapshot through the mirror (as a webhook would) and return the Order."""

    def make(**overrides: Any) -> Order:
        payload = order_payload(**overrides)
        with transaction.atomic():
            apply_order(store, parse_order(payload))
        return Order.objects.get(store=store, external_id=payload["id"])

    return make


def money(value: str) -> Decimal:
    return Decimal(value)


@pytest.fixture
def hubspot() -> Iterator[Any]:
    from storeloop.integrations.hubspot.fake import FakeHubSpot

    with FakeHubSpot(token="pat-test") as fake:
        yield fake


@pytest.fixture
def hubspot_connection(store: Any, hubspot: Any) -> Any:
    from storeloop.crm.connections import check_connection, connect_hubspot

    connection = connect_hubspot(store_id=store.pk, token="pat-test", base_url=hubspot.url)
    check_connection(connection)
    return connection
