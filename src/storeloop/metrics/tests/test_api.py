"""The metrics API through HTTP: access, shapes, store scoping, validation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from conftest import ApiClient
from django.test import Client

from storeloop.contacts.models import Contact
from storeloop.metrics.tests.builders import D1, D2, build_shop, updater
from storeloop.orders.models import Product

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    "/api/v1/contacts/1/metrics",
    "/api/v1/metrics/rfm",
    "/api/v1/metrics/products",
    "/api/v1/metrics/daily?from=2026-01-01&to=2026-01-31",
]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_endpoint_needs_a_key(path: str, store: Any) -> None:
    response = Client().get(path)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def contact(store: Any, email: str) -> Contact:
    return Contact.objects.get(store=store, email=email)


def test_contact_metrics_shape(api: ApiClient, store: Any) -> None:
    build_shop(store)
    ann = contact(store, "ann@example.com")
    body = api.get(f"/api/v1/contacts/{ann.pk}/metrics", as_of="2026-02-01T00:00:00Z").json()
    assert body == {
        "contact_id": ann.pk,
        "merged_into": None,
        "as_of": "2026-02-01T00:00:00Z",
        "currencies": [
            {
                "currency": "EUR",
                "order_count": 2,
                "total_spent_gross": "150.00",
                "total_refunded": "20.00",
                "total_spent_net": "130.00",
                "average_order_value": "65.00",
                "first_order_at": "2026-01-05T10:00:00Z",
                "last_order_at": "2026-01-12T10:00:00Z",
                "mean_days_between_orders": 7.0,
                "historical_clv": "130.00",
                "predicted_clv_12m": None,
                "expected_purchases_12m": None,
                "probability_alive": None,
                "prediction_quality": "not_fitted",
                "rfm": None,
            },
            {
                "currency": "USD",
                "order_count": 1,
                "total_spent_gross": "30.00",
                "total_refunded": "0.00",
                "total_spent_net": "30.00",
                "average_order_value": "30.00",
                "first_order_at": "2026-01-12T10:00:00Z",
                "last_order_at": "2026-01-12T10:00:00Z",
                "mean_days_between_orders": None,
                "historical_clv": "30.00",
                "predicted_clv_12m": None,
                "expected_purchases_12m": None,
                "probability_alive": None,
                "prediction_quality": "not_fitted",
                "rfm": None,
            },
        ],
    }
    naive = api.get(f"/api/v1/contacts/{ann.pk}/metrics", as_of="2026-02-01T00:00:00").json()
    assert naive["as_of"] == "2026-02-01T00:00:00Z"  # times without a zone are UTC


def test_contact_metrics_after_a_refresh_have_scores_and_a_too_thin_flag(api: ApiClient, store: Any) -> None:
    build_shop(store)
    updater.refresh_store_models(store.pk, as_of=dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    bob = contact(store, "bob@example.com")
    [eur] = api.get(f"/api/v1/contacts/{bob.pk}/metrics").json()["currencies"]
    # Two EUR contacts: fewer than five, so no quintiles; two customers, none repeat: too thin.
    assert (eur["rfm"], eur["prediction_quality"], eur["predicted_clv_12m"]) == (None, "too_thin", None)


def test_another_stores_contact_is_not_found(api: ApiClient, store: Any, other_store: Any) -> None:
    build_shop(other_store)
    theirs = contact(other_store, "ann@example.com")
    for contact_id in (theirs.pk, 999_999):
        response = api.get(f"/api/v1/contacts/{contact_id}/metrics")
        assert response.status_code == 404
        assert response.json()["code"] == "contact_not_found"


def test_rfm_counts(api: ApiClient, store: Any, other_store: Any) -> None:
    build_shop(store)
    build_shop(other_store)
    body = api.get("/api/v1/metrics/rfm").json()
    zero = dict.fromkeys(
        ["champions", "loyal_customers", "potential_loyalists", "new_customers", "promising",
         "need_attention", "about_to_sleep", "at_risk", "cant_lose_them", "hibernating", "lost"], 0
    )  # fmt: skip
    assert body == {
        "currencies": [
            {"currency": "EUR", "thresholds_as_of": None, "contacts": 2, "unscored": 2, "segments": zero},
            {"currency": "USD", "thresholds_as_of": None, "contacts": 1, "unscored": 1, "segments": zero},
        ]
    }
    assert api.get("/api/v1/metrics/rfm", currency="usd").json()["currencies"][0]["currency"] == "USD"


def test_products(api: ApiClient, store: Any, other_store: Any) -> None:
    build_shop(store)
    build_shop(other_store)
    Product.objects.create(store=store, external_id=93, name="Woo Single #1")
    body = api.get("/api/v1/metrics/products").json()
    assert body["count"] == 2
    assert body["next_offset"] is None
    mug = Product.objects.get(store=store, external_id=93)
    assert body["items"] == [
        {
            "product_external_id": 93,
            "product_id": mug.pk,
            "name": "Woo Single #1",
            "currency": "EUR",
            "orders": 3,
            "units": 4,
            "revenue": "128.00",
            "refunds": "16.00",
            "net_revenue": "112.00",
            "buyers": 2,
            "repeat_buyers": 1,
            "repeat_purchase_rate": 0.5,
        },
        {
            "product_external_id": 22,
            "product_id": None,
            "name": "",
            "currency": "USD",
            "orders": 1,
            "units": 1,
            "revenue": "25.00",
            "refunds": "0.00",
            "net_revenue": "25.00",
            "buyers": 1,
            "repeat_buyers": 0,
            "repeat_purchase_rate": 0.0,
        },
    ]
    page = api.get("/api/v1/metrics/products", limit=1, order_by="units").json()
    assert (page["count"], page["next_offset"], page["items"][0]["units"]) == (2, 1, 4)
    assert [p["currency"] for p in api.get("/api/v1/metrics/products", currency="USD").json()["items"]] == ["USD"]
    bad = api.get("/api/v1/metrics/products", order_by="price")
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_order_by")


def test_daily(api: ApiClient, store: Any, other_store: Any) -> None:
    build_shop(store)
    build_shop(other_store)
    body = api.get("/api/v1/metrics/daily", **{"from": D1.date().isoformat(), "to": "2026-01-31"}).json()
    assert body == {
        "from": "2026-01-05",
        "to": "2026-01-31",
        "items": [
            {"date": "2026-01-05", "currency": "EUR", "orders": 1, "revenue": "100.00", "refunds": "0.00",
             "net_revenue": "100.00", "average_order_value": "100.00", "new_customers": 1,
             "returning_customers": 0},
            {"date": "2026-01-12", "currency": "EUR", "orders": 2, "revenue": "60.00", "refunds": "20.00",
             "net_revenue": "40.00", "average_order_value": "20.00", "new_customers": 1,
             "returning_customers": 1},
            {"date": "2026-01-12", "currency": "USD", "orders": 1, "revenue": "30.00", "refunds": "0.00",
             "net_revenue": "30.00", "average_order_value": "30.00", "new_customers": 1,
             "returning_customers": 0},
        ],
    }  # fmt: skip
    only = api.get("/api/v1/metrics/daily", **{"from": D2.date().isoformat(), "to": D2.date().isoformat(),
                                               "currency": "usd"}).json()  # fmt: skip
    assert [(i["date"], i["currency"]) for i in only["items"]] == [("2026-01-12", "USD")]


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"from": "2026-13-01", "to": "2026-01-31"}, "validation_error", "from"),
        ({"from": "2026-01-01", "to": "soon"}, "validation_error", "to"),
        ({"to": "2026-01-31"}, "validation_error", "from"),
        ({"from": "2026-02-01", "to": "2026-01-31"}, "invalid_date_range", "to"),
        ({"from": "2024-01-01", "to": "2026-01-31"}, "date_range_too_long", "to"),
    ],
)
def test_daily_rejects_bad_dates(api: ApiClient, params: dict[str, str], code: str, field: str) -> None:
    response = api.get("/api/v1/metrics/daily", **params)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == code
    assert [d["field"] for d in body["details"]] == [field]
