"""The audience language: every field and operator against orders applied through the mirror, and
bad conditions rejected with errors that name the path, field and operator."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from storeloop.contacts.models import Contact
from storeloop.core.errors import ValidationError
from storeloop.messaging.campaigns.audience import compile_audience, validate_audience
from storeloop.metrics.models import ContactMetrics
from storeloop.metrics.tests.builders import D1, D2, order_payload, send

pytestmark = pytest.mark.django_db
NOW = D2 + dt.timedelta(days=10)  # 2026-01-22 10:00 UTC


@pytest.fixture
def shop(store: Any) -> dict[str, Contact]:
    """ann: EUR 100 (D1) + 50 with 20 refunded (D2) of product 93, and USD 30 of product 22 (D2);
    bob: EUR 10 on hold of product 93 (D2 + 5 h); cara: a cancelled order only; dan: no orders."""
    send(store, order_payload(1, email="ann@example.com", total="100.00", lines=[(93, 2, "80.00")], created=D1))
    send(store, order_payload(2, email="ann@example.com", status="completed", total="50.00",
                              lines=[(93, 1, "40.00")], refunds=["20.00"], created=D2))  # fmt: skip
    send(store, order_payload(3, email="ann@example.com", currency="USD", total="30.00", lines=[(22, 1, "25.00")],
                              created=D2))  # fmt: skip
    send(store, order_payload(5, email="bob@example.com", status="on-hold", total="10.00", lines=[(93, 1, "8.00")],
                              created=D2 + dt.timedelta(hours=5)))  # fmt: skip
    send(store, order_payload(4, email="cara@example.com", status="cancelled", total="999.00", created=D2))
    Contact.objects.create(store=store, email="dan@example.com")
    contacts = {c.email.split("@")[0]: c for c in Contact.objects.filter(store=store)}
    for name, country in {"ann": "DE", "bob": "FR", "cara": "", "dan": "de"}.items():
        Contact.objects.filter(pk=contacts[name].pk).update(country=country.upper())
    # Segments are the metrics app's job (tested there); here they are given.
    ContactMetrics.objects.filter(contact=contacts["ann"], currency="EUR").update(segment="champions")
    ContactMetrics.objects.filter(contact=contacts["ann"], currency="USD").update(segment="new_customers")
    ContactMetrics.objects.filter(contact=contacts["bob"]).update(segment="at_risk")
    return contacts


def who(store: Any, audience: Any) -> set[str]:
    return {c.email.split("@")[0] for c in compile_audience(store, audience, now=NOW)}


def rule(field: str, op: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value, **extra}


EVERYONE = {"ann", "bob", "cara", "dan"}
NESTED = {
    "all": [
        {"any": [rule("rfm_segment", "in", ["champions", "at_risk"]), rule("country", "eq", "DE")]},
        {"not": rule("total_spent", "gte", "100", currency="EUR")},
    ]
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (rule("country", "eq", "de"), {"ann", "dan"}),
        (rule("country", "ne", "DE"), {"bob", "cara"}),
        (rule("country", "in", ["FR", "DE"]), {"ann", "bob", "dan"}),
        (rule("country", "not_in", ["FR", "DE"]), {"cara"}),
        (rule("rfm_segment", "eq", "champions"), {"ann"}),
        (rule("rfm_segment", "in", ["champions", "at_risk"]), {"ann", "bob"}),
        (rule("rfm_segment", "ne", "champions"), {"bob", "cara", "dan"}),
        (rule("rfm_segment", "not_in", ["champions", "at_risk"]), {"cara", "dan"}),
        (rule("rfm_segment", "eq", "champions", currency="USD"), set()),
        (rule("rfm_segment", "eq", "new_customers", currency="usd"), {"ann"}),
        (rule("total_spent", "gte", "130"), {"ann"}),
        (rule("total_spent", "gt", "130"), set()),
        (rule("total_spent", "eq", 130), {"ann"}),
        (rule("total_spent", "ne", "130", currency="EUR"), {"bob", "cara", "dan"}),
        (rule("total_spent", "lt", "50"), {"ann", "bob", "cara", "dan"}),  # ann's USD 30; no orders = 0
        (rule("total_spent", "lt", "50", currency="EUR"), {"bob", "cara", "dan"}),
        (rule("total_spent", "lte", "10.0000", currency="EUR"), {"bob", "cara", "dan"}),
        (rule("total_spent", "gte", "0.01", currency="USD"), {"ann"}),
        (rule("order_count", "eq", 3), {"ann"}),  # 2 EUR + 1 USD
        (rule("order_count", "eq", 2, currency="EUR"), {"ann"}),
        (rule("order_count", "gte", 1), {"ann", "bob"}),
        (rule("order_count", "eq", 0), {"cara", "dan"}),  # a cancelled order does not count
        (rule("order_count", "ne", 0), {"ann", "bob"}),
        (rule("order_count", "lt", 2), {"bob", "cara", "dan"}),
        (rule("order_count", "lte", 1, currency="USD"), {"ann", "bob", "cara", "dan"}),
        (rule("order_count", "gt", 1), {"ann"}),
        (rule("last_order_at", "after", "2026-01-12"), {"ann", "bob"}),
        (rule("last_order_at", "after", "2026-01-12T12:00:00Z"), {"bob"}),
        (rule("last_order_at", "before", "2026-01-12T12:00:00+00:00"), {"ann"}),
        (rule("last_order_at", "before", "2026-01-12T10:00:00"), set()),  # ann's last is exactly then
        (rule("last_order_at", "before", "2026-01-12T10:00:01", currency="EUR"), {"ann"}),
        (rule("last_order_at", "within_days", 10), {"ann", "bob"}),
        (rule("last_order_at", "within_days", 9), set()),
        (rule("last_order_at", "older_than_days", 9), {"ann", "bob"}),
        (rule("first_order_at", "before", "2026-01-06"), {"ann"}),
        (rule("first_order_at", "after", "2026-01-06"), {"bob"}),
        (rule("first_order_at", "after", "2026-01-06", currency="USD"), {"ann"}),
        (rule("first_order_at", "within_days", 14), {"bob"}),
        (rule("first_order_at", "older_than_days", 14), {"ann"}),
        (rule("bought_product", "eq", 93), {"ann", "bob"}),
        (rule("bought_product", "in", [22, 5000]), {"ann"}),
        (rule("bought_product", "ne", 22), {"bob", "cara", "dan"}),
        (rule("bought_product", "not_in", [93]), {"cara", "dan"}),
        ({"all": []}, EVERYONE),
        ({"any": []}, set()),
        ({"not": {"all": []}}, set()),
        ({"all": [rule("country", "eq", "DE"), rule("order_count", "gte", 1)]}, {"ann"}),
        ({"any": [rule("country", "eq", "FR"), rule("bought_product", "eq", 22)]}, {"ann", "bob"}),
        ({"not": rule("country", "eq", "DE")}, {"bob", "cara"}),
        (NESTED, {"bob", "dan"}),
    ],
)
def test_each_field_and_operator(store: Any, shop: dict[str, Contact], condition: Any, expected: set[str]) -> None:
    assert who(store, condition) == expected


def test_merged_contacts_and_other_stores_are_never_in_an_audience(
    store: Any, other_store: Any, shop: dict[str, Contact]
) -> None:
    Contact.objects.filter(pk=shop["dan"].pk).update(merged_into=shop["ann"])
    Contact.objects.create(store=other_store, email="eve@example.com", country="DE")
    assert who(store, rule("country", "eq", "DE")) == {"ann"}
    assert who(other_store, {"all": []}) == {"eve"}


def test_an_audience_is_one_query(store: Any, shop: dict[str, Contact]) -> None:
    condition = {"all": [rule("rfm_segment", "in", ["champions"]), rule("total_spent", "lt", "500"),
                         rule("order_count", "gte", 1), rule("last_order_at", "within_days", 30),
                         rule("bought_product", "in", [93]), rule("country", "in", ["DE", "FR"])]}  # fmt: skip
    audience = compile_audience(store, condition, now=NOW)
    with CaptureQueriesContext(connection) as queries:
        assert list(audience.values_list("email", flat=True)) == ["ann@example.com"]
    assert len(queries) == 1


def problems(raw: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        validate_audience(raw)
    assert caught.value.code == "invalid_audience"
    assert caught.value.status_code == 422
    details: list[dict[str, Any]] = caught.value.details
    assert caught.value.message.startswith(f"invalid audience at {details[0]['path']}: {details[0]['error']}")
    return details


def test_unknown_fields_and_operators_are_named() -> None:
    [problem] = problems({"all": [rule("country", "eq", "DE"), rule("favourite_colour", "eq", "red")]})
    assert problem["path"] == "all[1]"
    assert problem["field"] == "favourite_colour"
    assert problem["error"].startswith("unknown field 'favourite_colour'; fields are country, rfm_segment, ")
    [problem] = problems(rule("total_spent", "in", ["100"]))
    assert problem == {"path": "(root)", "field": "total_spent", "op": "in",
                       "error": "total_spent takes the operators eq, gt, gte, lt, lte, ne, not 'in'"}  # fmt: skip
    [problem] = problems({"any": [{"not": rule("last_order_at", "gte", "2026-01-01")}]})
    assert problem["path"] == "any[0].not"
    assert (
        problem["error"] == "last_order_at takes the operators after, before, older_than_days, within_days, not 'gte'"
    )


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (rule("rfm_segment", "eq", "loyal"), "unknown segment 'loyal'; segments are champions, loyal_customers, "),
        (rule("country", "eq", "Germany"), 'a country is a two-letter ISO 3166 code such as "DE"'),
        (rule("total_spent", "gte", "lots"), '\'lots\' is not an amount; send e.g. "100" or "99.95"'),
        (rule("total_spent", "gte", "1.00001"), "an amount has at most four decimals"),
        (rule("total_spent", "gte", True), 'an amount is a number or a decimal string such as "100" or "99.95"'),
        (rule("total_spent", "gte", "NaN"), "an amount has at most four decimals"),
        (rule("order_count", "gte", -1), "an order count is a whole number, 0 or more"),
        (rule("order_count", "gte", 1.5), "an order count is a whole number, 0 or more"),
        (rule("last_order_at", "after", "last tuesday"), "'last tuesday' is not an ISO 8601 date; send e.g. "),
        (rule("last_order_at", "within_days", 0), "a number of days is a whole number from 1 to 36500"),
        (rule("last_order_at", "within_days", "7"), "a number of days is a whole number from 1 to 36500"),
        (rule("bought_product", "in", []), "in takes a non-empty list of values"),
        (rule("bought_product", "in", 93), "in takes a non-empty list of values"),
        (rule("bought_product", "eq", [93]), "eq takes one value; use in/not_in for a list"),
        (rule("bought_product", "eq", -3), "a product is its WooCommerce product id, a positive whole number"),
        (rule("country", "eq", "DE", currency="EUR"), "country takes no currency"),
        (rule("total_spent", "gte", "1", currency="euro"), 'currency is a three-letter ISO 4217 code such as "EUR"'),
        ({"field": "country", "op": "eq"}, "a rule needs a value"),
        ({"field": "country", "op": "eq", "value": "DE", "negate": True}, "unknown keys ['negate']; "),
        ({"all": [], "field": "country"}, "a 'all' group has no other keys; found ['all', 'field']"),
        ({"all": {"field": "country"}}, "'all' takes a list of conditions"),
        ([rule("country", "eq", "DE")], 'a condition is an object: {"all": [...]}, {"any": [...]}, '),
        ({"not": {"not": {"not": {"not": {"not": {"not": {"all": []}}}}}}}, "conditions nest at most 6 levels deep"),
        ({"all": [rule("country", "eq", "DE")] * 101}, "an audience has at most 100 rules"),
    ],
)
def test_bad_values_get_an_error_that_says_what_to_send(raw: Any, error: str) -> None:
    assert problems(raw)[-1]["error"].startswith(error)


def test_every_problem_is_reported_at_once() -> None:
    details = problems({"all": [rule("country", "eq", "XYZ"), rule("order_count", "between", [1, 2])]})
    assert [(d["path"], d["field"]) for d in details] == [("all[0]", "country"), ("all[1]", "order_count")]
