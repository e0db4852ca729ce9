from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storeloop.core.errors import TerminalError
from storeloop.integrations.woocommerce.errors import WooPayloadError
from storeloop.integrations.woocommerce.models import (
    WooAddress,
    parse_customer,
    parse_order,
    parse_product,
    parse_webhook,
)

FIXTURES = Path(__file__).parent / "fixtures"


def documented_order() -> dict[str, Any]:
    """The order example from the WooCommerce REST v3 docs (captured as a fixture)."""
    data: dict[str, Any] = json.loads((FIXTURES / "order_727.json").read_text())
    return data


def test_parse_documented_order_exactly() -> None:
    payload = documented_order()
    order = parse_order(payload)

    assert order.id == 727
    assert order.parent_id == 0
    assert order.number == "727"
    assert order.status == "processing"
    assert order.currency == "USD"
    assert order.date_created_gmt == datetime(2017, 3, 22, 19, 28, 2, tzinfo=UTC)
    assert order.date_modified_gmt == datetime(2017, 3, 22, 19, 28, 8, tzinfo=UTC)
    assert order.date_paid_gmt is None
    assert order.date_completed_gmt is None
    assert order.total == Decimal("29.35")
    assert order.total_tax == Decimal("1.35")
    assert order.shipping_total == Decimal("10.00")
    assert order.discount_total == Decimal("0.00")
    assert order.customer_id == 0
    assert order.is_guest is True
    assert order.customer_note == ""
    assert order.billing == WooAddress(
        first_name="John",
        last_name="Doe",
        address_1="969 Market",
        city="San Francisco",
        state="CA",
        postcode="94103",
        country="US",
        email="john.doe@example.com",
        phone="(555) 555-5555",
    )
    assert order.shipping.phone == ""
    assert order.shipping.email == ""
    assert order.payment_method == "cod"
    assert order.payment_method_title == "Cash on delivery"
    assert order.meta_data == ({"id": 13106, "key": "_some_key", "value": "yes"},)
    assert len(order.line_items) == 1
    item = order.line_items[0]
    assert (item.id, item.name, item.product_id, item.variation_id, item.quantity, item.sku) == (
        315,
        "Woo Single #1",
        93,
        0,
        2,
        "",
    )
    assert item.subtotal == Decimal("6.00")
    assert item.total == Decimal("6.00")
    assert item.total_tax == Decimal("0.45")
    assert item.price == Decimal("3")
    assert order.refunds == ()
    assert order.refunded_total == Decimal("0")
    assert order.raw == payload
    assert isinstance(order.total, Decimal)
    assert not isinstance(item.price, float)


def test_refunds_are_negative_strings_and_amount_is_positive() -> None:
    payload = documented_order()
    payload["refunds"] = [
        {"id": 726, "reason": "Damaged", "total": "-5.00"},
        {"id": 730, "reason": "", "total": "-1.35"},
    ]
    order = parse_order(payload)
    assert [r.total for r in order.refunds] == [Decimal("-5.00"), Decimal("-1.35")]
    assert [r.amount for r in order.refunds] == [Decimal("5.00"), Decimal("1.35")]
    assert order.refunded_total == Decimal("6.35")


def test_line_item_float_price_is_read_through_its_repr() -> None:
    payload = documented_order()
    payload["line_items"][0]["price"] = 8.333333333333334
    assert parse_order(payload).line_items[0].price == Decimal("8.333333333333334")


def test_zoned_and_php_quirk_values() -> None:
    payload = documented_order()
    payload["date_modified_gmt"] = "2017-03-22T21:28:08+02:00"
    payload["shipping"] = []  # PHP encodes an empty associative array as a list
    payload["customer_id"] = "12"  # ids as numeric strings from some plugins
    order = parse_order(payload)
    assert order.date_modified_gmt == datetime(2017, 3, 22, 19, 28, 8, tzinfo=UTC)
    assert order.shipping == WooAddress()
    assert order.customer_id == 12


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("id"), "order.id"),
        (lambda d: d.update(total="29,35"), "order.total"),
        (lambda d: d.update(total=None), "order.total"),
        (lambda d: d.update(total_tax=["1.35"]), "order.total_tax"),
        (lambda d: d.update(date_created_gmt="22/03/2017"), "order.date_created_gmt"),
        (lambda d: d.pop("date_modified_gmt"), "order.date_modified_gmt"),
        (lambda d: d.update(status=7), "order.status"),
        (lambda d: d.update(billing="John"), "order.billing"),
        (lambda d: d.update(line_items={"0": {}}), "order.line_items"),
        (lambda d: d["line_items"][0].update(quantity="two"), "order.line_items[0].quantity"),
        (lambda d: d["line_items"][0].update(total="NaN"), "order.line_items[0].total"),
        (lambda d: d.update(refunds=[{"id": 1, "total": {}}]), "order.refunds[0].total"),
        (lambda d: d.update(meta_data=["x"]), "order.meta_data[0]"),
        (lambda d: d.update(customer_id=True), "order.customer_id"),
    ],
)
def test_malformed_order_names_the_field(mutate: Any, field: str) -> None:
    payload = copy.deepcopy(documented_order())
    mutate(payload)
    with pytest.raises(WooPayloadError) as caught:
        parse_order(payload)
    assert f"{field}:" in str(caught.value)
    assert isinstance(caught.value, TerminalError)


def test_payload_error_never_echoes_the_value() -> None:
    payload = documented_order()
    payload["total"] = "jane.doe@example.com"
    with pytest.raises(WooPayloadError) as caught:
        parse_order(payload)
    assert "jane.doe" not in str(caught.value)


def test_non_object_payload() -> None:
    with pytest.raises(WooPayloadError, match="order: expected an object, got list"):
        parse_order([documented_order()])


def test_parse_customer_with_never_modified_user() -> None:
    customer = parse_customer(
        {
            "id": 25,
            "date_created_gmt": "2024-02-01T10:00:00",
            "date_modified_gmt": None,
            "email": "zoe.mueller@example.com",
            "first_name": "Zoë",
            "last_name": "Müller",
            "role": "customer",
            "username": "zoe",
            "billing": {"email": "Zoe.Mueller@example.com", "phone": "+49 30 1234567"},
            "shipping": [],
            "is_paying_customer": True,
            "meta_data": [],
        }
    )
    assert customer.id == 25
    assert customer.date_created_gmt == datetime(2024, 2, 1, 10, 0, tzinfo=UTC)
    assert customer.date_modified_gmt is None
    assert customer.billing.phone == "+49 30 1234567"
    assert customer.first_name == "Zoë"


def test_parse_product_with_empty_price() -> None:
    product = parse_product(
        {
            "id": 42,
            "name": "Draft",
            "slug": "draft",
            "sku": "",
            "type": "simple",
            "status": "draft",
            "price": "",
            "regular_price": "",
            "sale_price": "",
            "date_modified_gmt": "2024-01-01T00:00:00",
        }
    )
    assert product.price is None
    assert product.date_modified_gmt == datetime(2024, 1, 1, tzinfo=UTC)
    variation = parse_product({"id": 43, "type": "variation", "parent_id": 42, "price": "19.90"})
    assert (variation.parent_id, variation.price) == (42, Decimal("19.90"))


def test_parse_webhook_derives_resource_and_event() -> None:
    webhook = parse_webhook(
        {
            "id": 3,
            "name": "Storeloop",
            "status": "disabled",
            "topic": "order.updated",
            "delivery_url": "https://storeloop.example/hooks",
            "hooks": ["woocommerce_update_order"],
            "date_created_gmt": "2024-05-01T08:00:00",
        }
    )
    assert (webhook.resource, webhook.event, webhook.status) == ("order", "updated", "disabled")
    assert webhook.hooks == ("woocommerce_update_order",)
    with pytest.raises(WooPayloadError, match=r"webhook\.hooks\[0\]"):
        parse_webhook({"id": 3, "status": "active", "topic": "order.updated", "hooks": [1]})


@given(st.decimals(min_value=Decimal("-99999999.99"), max_value=Decimal("99999999.99"), places=2))
def test_money_strings_round_trip_exactly(amount: Decimal) -> None:
    payload = documented_order()
    payload["total"] = f"{amount:.2f}"
    assert parse_order(payload).total == amount
