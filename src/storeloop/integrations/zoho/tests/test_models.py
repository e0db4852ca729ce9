"""Record builders, payloads and the mapping of upsert answers onto outcomes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from storeloop.integrations.crm import RecordOutcome
from storeloop.integrations.zoho.errors import ZohoRateLimited, ZohoValidationError, error_from_response
from storeloop.integrations.zoho.models import (
    CONTACTS,
    DEALS,
    MISMATCH_ERROR,
    ContactRecord,
    DealRecord,
    OrderedItem,
    ProductRecord,
    SalesOrderRecord,
    dedupe_by_key,
    outcomes_from_answer,
)


def test_contact_builder_normalises_and_fills_last_name() -> None:
    contact = ContactRecord.build("  Jane.Doe@Example.COM ", first_name=" Jane ")
    assert (contact.key, contact.last_name, contact.first_name) == ("jane.doe@example.com", "jane.doe", "Jane")
    assert contact.to_zoho() == {"Email": "jane.doe@example.com", "Last_Name": "jane.doe", "First_Name": "Jane"}
    assert ContactRecord.build("a@b.io", last_name="  ").last_name == "a"
    assert ContactRecord.build("a@b.io", last_name="X" * 200).last_name == "X" * 80
    assert ContactRecord("a@b.io", last_name="").to_zoho()["Last_Name"] == "Unknown"


@pytest.mark.parametrize("email", ["", "no-at-sign", "@example.com", "a@localhost", "a b@example.com"])
def test_contact_builder_rejects_bad_emails_without_echoing_them(email: str) -> None:
    with pytest.raises(ValueError, match="valid email") as caught:
        ContactRecord.build(email)
    assert not email or email not in str(caught.value)


def test_contact_extra_fields_cannot_override_the_key() -> None:
    payload = ContactRecord.build("a@b.io", extra={"Email": "other@b.io", "Lead_Source": "Web"}).to_zoho()
    assert (payload["Email"], payload["Lead_Source"]) == ("a@b.io", "Web")


def test_deal_payload() -> None:
    record = DealRecord.build(
        " s1-727 ",
        deal_name="Order #727",
        amount="129.5",
        stage="Closed Won",
        closing_date=date(2025, 2, 3),
        contact_id="111",
        pipeline="Standard",
        currency="eur",
    )
    assert record.key == "s1-727"
    assert record.to_zoho() == {
        "Storeloop_Order_Ref": "s1-727",
        "Deal_Name": "Order #727",
        "Amount": 129.5,
        "Stage": "Closed Won",
        "Closing_Date": "2025-02-03",
        "Pipeline": "Standard",
        "Contact_Name": {"id": "111"},
        "Currency": "EUR",
    }
    minimal = DealRecord.build("s1-1", deal_name="", amount=10, stage="Won", closing_date="2025-02-03T10:00:00")
    assert minimal.to_zoho() == {
        "Storeloop_Order_Ref": "s1-1",
        "Deal_Name": "Order s1-1",
        "Amount": 10,
        "Stage": "Won",
        "Closing_Date": "2025-02-03",
    }


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"amount": "abc"}, "amount is not a number"),
        ({"amount": "NaN"}, "amount is not a finite number"),
        ({"stage": " "}, "needs a Stage"),
        ({"closing_date": "03/02/2025"}, "closing_date must be"),
    ],
)
def test_deal_builder_rejects_unwritable_values(kwargs: dict[str, Any], problem: str) -> None:
    base: dict[str, Any] = {"deal_name": "d", "amount": 1, "stage": "Won", "closing_date": "2025-01-01"}
    with pytest.raises(ValueError, match=problem):
        DealRecord.build("s1-1", **{**base, **kwargs})
    with pytest.raises(ValueError, match="order reference"):
        DealRecord.build(" ", **base)


def test_sales_order_and_product_payloads() -> None:
    item = OrderedItem.build("900", quantity=2, list_price="9.99", discount="1", description="gift wrap")
    order = SalesOrderRecord.build("s1-8", items=[item], status="Created", contact_id="1", deal_id="2")
    assert order.to_zoho() == {
        "Storeloop_Order_Ref": "s1-8",
        "Subject": "Order s1-8",
        "Ordered_Items": [
            {
                "Product_Name": {"id": "900"},
                "Quantity": 2,
                "List_Price": 9.99,
                "Discount": 1,
                "Description": "gift wrap",
            }
        ],
        "Status": "Created",
        "Contact_Name": {"id": "1"},
        "Deal_Name": {"id": "2"},
    }
    with pytest.raises(ValueError, match="at least one ordered item"):
        SalesOrderRecord.build("s1-8", items=[])
    for quantity in (0, "-1", "many"):
        with pytest.raises(ValueError, match="quantity must be positive"):
            OrderedItem.build("900", quantity=quantity, list_price=1)
    with pytest.raises(ValueError, match="Zoho product id"):
        OrderedItem.build("", quantity=1, list_price=1)
    product = ProductRecord.build(" SKU-1 ", product_name="", unit_price=Decimal("3"))
    assert product.to_zoho() == {
        "Product_Code": "SKU-1",
        "Product_Name": "SKU-1",
        "Product_Active": True,
        "Unit_Price": 3,
    }


def test_dedupe_keeps_first_position_and_last_value() -> None:
    a1, b, a2 = (ContactRecord.build(e, last_name=n) for e, n in [("a@x.io", "1"), ("b@x.io", "2"), ("A@x.io", "3")])
    assert dedupe_by_key([a1, b, a2]) == [a2, b]


def success(record_id: str, action: str, duplicate_field: str | None = None) -> dict[str, Any]:
    return {
        "code": "SUCCESS",
        "duplicate_field": duplicate_field,
        "action": action,
        "details": {"id": record_id, "Modified_Time": "2025-01-01T00:00:00+05:30"},
        "message": "record added" if action == "insert" else "record updated",
        "status": "success",
    }


def test_outcomes_follow_input_order_and_codes() -> None:
    chunk = [ContactRecord.build(f"u{n}@x.io") for n in range(5)]
    data = [
        success("1", "insert"),
        success("2", "update", "Email"),
        {"code": "INVALID_DATA", "details": {"api_name": "Email", "json_path": "$.data[2].Email"}, "status": "error"},
        {
            "code": "MULTIPLE_OR_MULTI_ERRORS",
            "details": {
                "errors": [
                    {
                        "code": "DUPLICATE_DATA",
                        "message": "duplicate data",
                        "details": {"api_name": "Phone", "id": "9"},
                    },
                    {"code": "INVALID_DATA", "message": "invalid data", "details": {"api_name": "Mobile"}},
                ]
            },
            "message": "Multiple errors in the request",
            "status": "error",
        },
        {"code": "INTERNAL_ERROR", "details": {}, "message": "Internal Server Error", "status": "error"},
    ]
    outcomes = outcomes_from_answer(CONTACTS, chunk, data)
    assert outcomes == [
        RecordOutcome("u0@x.io", "1", created=True),
        RecordOutcome("u1@x.io", "2", created=False),
        RecordOutcome("u2@x.io", error="INVALID_DATA: error [Email]"),
        RecordOutcome(
            "u3@x.io",
            error="MULTIPLE_OR_MULTI_ERRORS: DUPLICATE_DATA: duplicate data [Phone] (existing record 9); "
            "INVALID_DATA: invalid data [Mobile]",
        ),
        RecordOutcome("u4@x.io", error="INTERNAL_ERROR: Internal Server Error", transient=True),
    ]


@pytest.mark.parametrize(
    "data",
    [None, [], [success("1", "insert")], [{"code": "SUCCESS", "status": "success", "details": {}}, {}]],
)
def test_an_answer_that_does_not_line_up_is_retried(data: Any) -> None:
    chunk = [DealRecord.build(r, deal_name="d", amount=1, stage="s", closing_date="2025-01-01") for r in ("a", "b")]
    outcomes = outcomes_from_answer(DEALS, chunk, data)
    assert [o.key for o in outcomes] == ["a", "b"]
    assert all(o.error == MISMATCH_ERROR and o.transient for o in outcomes)


def test_error_mapping_keeps_only_structural_details() -> None:
    error = error_from_response(
        400,
        {
            "code": "DUPLICATE_DATA",
            "message": "duplicate data",
            "details": {"api_name": "Email", "duplicate_record": {"Owner": {"name": "Patricia Boyle"}}},
            "status": "error",
        },
    )
    assert isinstance(error, ZohoValidationError)
    assert error.details == {"api_name": "Email"}
    assert str(error) == "duplicate data code=DUPLICATE_DATA status=400 field=Email"
    limited = error_from_response(429, {"code": "TOO_MANY_REQUESTS", "details": {"retry_after": 30}})
    assert isinstance(limited, ZohoRateLimited)
    assert limited.retry_after == 30.0
    assert error_from_response(429, None, retry_after=5).retry_after == 5  # type: ignore[attr-defined]
