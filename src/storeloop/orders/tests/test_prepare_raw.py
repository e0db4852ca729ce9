"""``prepare_raw`` (the backfill's fast path) equals ``prepare_order(parse_order(...))`` on any input."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.woo import order_payload

from storeloop.integrations.woocommerce.fake import FakeWooShop, OrderQuery
from storeloop.integrations.woocommerce.models import parse_order
from storeloop.orders.prepare import prepare_order, prepare_raw

MISSING = object()


def outcome(prepare: Any, data: Any) -> tuple[Any, ...]:
    try:
        return ("ok", prepare(data))
    except Exception as exc:  # the same error, with the same message naming the same field
        return ("error", type(exc), str(exc))


def reference(data: Any) -> Any:
    return prepare_order(parse_order(data))


def assert_same(data: Any) -> None:
    expected = outcome(reference, copy.deepcopy(data))
    assert outcome(prepare_raw, data) == expected


def test_every_order_of_a_fake_shop_prepares_the_same() -> None:
    shop = FakeWooShop(consumer_key="ck", consumer_secret="cs", seed=3, initial_orders=1500)
    orders = shop.list_orders(OrderQuery(limit=10_000))[1]
    assert any(o["refunds"] for o in orders)
    assert any(o["customer_id"] for o in orders)
    assert any(o["date_paid_gmt"] is None for o in orders)
    for order in orders:
        assert prepare_raw(order) == reference(order)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**6),
    st.just(2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", " ", "0", "1.50", " 2.00 ", "-5.00", "1e3", "abc", "NaN", "Infinity", "1,50", "07.50"]),
    st.sampled_from(
        [
            "2024-01-31T10:00:00",
            "2024-13-01T10:00:00",
            "2024-01-31 10:00:00",
            "2024-01-31T10:00:00Z",
            "2024-01-31T10:00:00+02:00",
            " 2024-01-31T10:00:00",
            "2024-01-31",
            "2024-01-31T10:00:00.250000",
        ]
    ),
    st.text(max_size=6),
)
values = st.one_of(
    scalars,
    st.just([]),
    st.just({}),
    st.lists(scalars, max_size=2),
    st.dictionaries(st.sampled_from(["key", "value", "email", "phone", "id"]), scalars, max_size=3),
)
TOP = [
    "id", "parent_id", "number", "status", "currency", "date_created_gmt", "date_modified_gmt", "date_paid_gmt",
    "date_completed_gmt", "total", "total_tax", "shipping_total", "discount_total", "customer_id", "customer_note",
    "billing", "shipping", "payment_method", "payment_method_title", "meta_data", "line_items", "refunds", "_links",
]  # fmt: skip
ADDRESS = ["first_name", "last_name", "country", "email", "phone", "postcode", "company"]
LINE = ["id", "name", "product_id", "variation_id", "quantity", "subtotal", "total", "total_tax", "sku", "price"]
REFUND = ["id", "reason", "total"]


def mutate(target: dict[str, Any], key: str, value: Any) -> None:
    if value is MISSING:
        target.pop(key, None)
    else:
        target[key] = value


edits = st.lists(
    st.one_of(
        st.tuples(st.just("top"), st.sampled_from(TOP), st.one_of(values, st.just(MISSING))),
        st.tuples(st.just("billing"), st.sampled_from(ADDRESS), st.one_of(scalars, st.just(MISSING))),
        st.tuples(st.just("line"), st.sampled_from([*LINE, "meta_data"]), st.one_of(values, st.just(MISSING))),
        st.tuples(st.just("refund"), st.sampled_from(REFUND), st.one_of(scalars, st.just(MISSING))),
    ),
    max_size=3,
)


@settings(max_examples=400)
@given(edits)
def test_any_edit_of_an_order_prepares_the_same_or_fails_the_same(changes: list[tuple[str, str, Any]]) -> None:
    data = order_payload()
    data["refunds"] = [{"id": 901, "reason": "scratched", "total": "-3.00"}]
    for where, key, value in changes:
        if where == "top":
            mutate(data, key, value)
        elif where == "billing" and isinstance(data.get("billing"), dict):
            mutate(data["billing"], key, value)
        else:
            items = data.get("line_items" if where == "line" else "refunds")
            if isinstance(items, list) and items and isinstance(items[0], dict):
                mutate(items[0], key, value)
    assert_same(data)


@given(values)
def test_anything_at_all_prepares_the_same_or_fails_the_same(value: Any) -> None:
    assert_same(value)
