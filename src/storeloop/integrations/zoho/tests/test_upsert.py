"""Upserts against the fake: insert/update, batching, per-record errors, idempotency."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from storeloop.core.errors import TransientError
from storeloop.integrations.zoho.client import ZohoClient
from storeloop.integrations.zoho.fake import ORDER_REF, FakeZoho
from storeloop.integrations.zoho.models import (
    DEALS,
    ContactRecord,
    DealRecord,
    OrderedItem,
    ProductRecord,
    SalesOrderRecord,
)

from .conftest import MakeClient


def deal(ref: str, amount: str = "10.00", contact_id: str | None = None) -> DealRecord:
    return DealRecord.build(
        ref,
        deal_name=f"Order {ref}",
        amount=amount,
        stage="Closed Won",
        closing_date="2025-03-01",
        contact_id=contact_id,
    )


def upsert_calls(zoho: FakeZoho, module: str) -> list[int]:
    return [r.status for r in zoho.api_requests() if r.path == f"/crm/v8/{module}/upsert"]


def test_insert_then_update_keeps_the_id(zoho: FakeZoho, client: ZohoClient) -> None:
    first = client.upsert_contacts([ContactRecord.build("Ann@Example.com", first_name="Ann")])
    assert [(o.key, o.ok, o.created) for o in first] == [("ann@example.com", True, True)]
    second = client.upsert_contacts([ContactRecord.build("ann@example.com", first_name="Ann", last_name="Lee")])
    assert [(o.key, o.remote_id, o.created) for o in second] == [("ann@example.com", first[0].remote_id, False)]
    records = zoho.records("Contacts")
    assert len(records) == 1
    assert (records[0]["Email"], records[0]["Last_Name"]) == ("ann@example.com", "Lee")


def test_deal_update_changes_amount_not_identity(zoho: FakeZoho, client: ZohoClient) -> None:
    contact = client.upsert_contacts([ContactRecord.build("bo@example.com")])[0]
    created = client.upsert_deals([deal("s1-727", "20.00", contact.remote_id)])[0]
    updated = client.upsert_deals([deal("s1-727", "25.50", contact.remote_id)])[0]
    assert (created.created, updated.created, updated.remote_id) == (True, False, created.remote_id)
    [stored] = zoho.records("Deals")
    assert (stored[ORDER_REF], stored["Amount"], stored["Contact_Name"]["id"]) == ("s1-727", 25.5, contact.remote_id)


def test_more_than_100_records_are_split(zoho: FakeZoho, client: ZohoClient) -> None:
    records = [ContactRecord.build(f"user{n}@example.com") for n in range(250)]
    outcomes = client.upsert_contacts(records)
    assert [o.key for o in outcomes] == [r.key for r in records]
    assert all(o.ok and o.created for o in outcomes)
    assert upsert_calls(zoho, "Contacts") == [200, 200, 200]
    assert len({o.remote_id for o in outcomes}) == 250
    again = client.upsert_contacts(records)
    assert [o.remote_id for o in again] == [o.remote_id for o in outcomes]
    assert not any(o.created for o in again)
    assert len(zoho.records("Contacts")) == 250
    assert zoho.duplicates() == 0


def test_per_record_error_is_mapped_to_its_key(zoho: FakeZoho, client: ZohoClient) -> None:
    zoho.faults.reject_emails = {"bad@example.com"}
    records = [ContactRecord.build(e) for e in ("ok1@example.com", "bad@example.com", "ok2@example.com")]
    outcomes = client.upsert_contacts(records)
    assert [(o.key, o.ok) for o in outcomes] == [
        ("ok1@example.com", True),
        ("bad@example.com", False),
        ("ok2@example.com", True),
    ]
    bad = outcomes[1]
    assert bad.error == "INVALID_DATA: invalid data [Email]"
    assert (bad.transient, bad.remote_id) == (False, None)
    assert upsert_calls(zoho, "Contacts") == [207]
    assert {r["Email"] for r in zoho.records("Contacts")} == {"ok1@example.com", "ok2@example.com"}


def test_all_records_failing_still_yields_outcomes(zoho: FakeZoho, client: ZohoClient) -> None:
    outcomes = client.upsert_deals([deal("s1-1", contact_id="4150868000999999999"), deal("s1-2", contact_id="1")])
    assert upsert_calls(zoho, "Deals") == [400]  # Zoho answers 400 with data[] when every record fails
    assert [o.key for o in outcomes] == ["s1-1", "s1-2"]
    assert all(o.error == "INVALID_DATA: the related id given seems to be invalid [Contact_Name]" for o in outcomes)


def test_missing_mandatory_field_on_insert_but_not_on_update(zoho: FakeZoho, client: ZohoClient) -> None:
    # Raw payloads: the builders always fill the mandatory fields.
    sparse = _Raw("s1-5", {ORDER_REF: "s1-5", "Deal_Name": "no date", "Stage": "Won"})
    [missing] = client._upsert(DEALS, [sparse])
    assert missing.error == "MANDATORY_NOT_FOUND: required field not found [Closing_Date]"
    assert not missing.transient
    assert client.upsert_deals([deal("s1-5")])[0].created
    [updated] = client._upsert(DEALS, [sparse])  # an update need not repeat mandatory fields
    assert (updated.ok, updated.created) == (True, False)


def test_duplicate_keys_in_one_call_give_one_outcome_and_one_record(zoho: FakeZoho, client: ZohoClient) -> None:
    outcomes = client.upsert_deals([deal("s1-1", "1.00"), deal("s1-2"), deal("s1-1", "3.00")])
    assert [(o.key, o.created) for o in outcomes] == [("s1-1", True), ("s1-2", True)]
    amounts = {r[ORDER_REF]: r["Amount"] for r in zoho.records("Deals")}
    assert amounts == {"s1-1": 3, "s1-2": 10}  # the last version of a key wins


def test_no_duplicates_after_repeated_upserts(zoho: FakeZoho, client: ZohoClient) -> None:
    zoho.faults.error_rate = 0.3
    client_ok = 0
    for round_ in range(5):
        refs = [f"s1-{n}" for n in range(40)]
        try:
            outcomes = client.upsert_deals([deal(ref, f"{round_}.00") for ref in refs])
        except TransientError:  # an exhausted retry budget: the next round repeats the same keys
            pass
        else:
            client_ok += 1
            assert [o.key for o in outcomes] == refs
    assert client_ok >= 1
    assert zoho.duplicates() == 0
    assert len(zoho.records("Deals")) == 40


def test_concurrent_workers_sharing_keys_create_each_record_once(zoho: FakeZoho, make_client: MakeClient) -> None:
    clients = [make_client() for _ in range(4)]
    errors: list[BaseException] = []

    def work(client: ZohoClient) -> None:
        try:
            client.upsert_contacts([ContactRecord.build(f"c{n}@example.com") for n in range(30)])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(zoho.records("Contacts")) == 30
    assert zoho.duplicates() == 0
    assert zoho.refresh_count == 1  # the shared store: one access token for all four workers


def test_products_then_sales_order_with_line_items(zoho: FakeZoho, client: ZohoClient) -> None:
    products = client.upsert_products(
        [
            ProductRecord.build("SKU-1", product_name="Mug", unit_price="8.50"),
            ProductRecord.build("SKU-2", product_name="Tea", unit_price=4),
        ]
    )
    ids = {o.key: o.remote_id for o in products}
    assert all(o.ok for o in products)
    contact = client.upsert_contacts([ContactRecord.build("cy@example.com")])[0]
    the_deal = client.upsert_deals([deal("s1-5", "21.00", contact.remote_id)])[0]
    order = SalesOrderRecord.build(
        "s1-5",
        subject="Order s1-5",
        status="Delivered",
        contact_id=contact.remote_id,
        deal_id=the_deal.remote_id,
        items=[
            OrderedItem.build(ids["SKU-1"] or "", quantity=2, list_price="8.50"),
            OrderedItem.build(ids["SKU-2"] or "", quantity=1, list_price=4, discount="0.50"),
        ],
    )
    [created] = client.upsert_sales_orders([order])
    assert (created.ok, created.created) == (True, True)
    [again] = client.upsert_sales_orders([order])
    assert (again.remote_id, again.created) == (created.remote_id, False)
    [stored] = zoho.records("Sales_Orders")
    assert stored["Deal_Name"]["id"] == the_deal.remote_id
    items = [(i["Product_Name"]["id"], i["Quantity"], i["List_Price"]) for i in stored["Ordered_Items"]]
    assert items == [(ids["SKU-1"], 2, 8.5), (ids["SKU-2"], 1, 4)]
    # The product code is unique: re-upserting the catalogue updates in place.
    assert not any(o.created for o in client.upsert_products([ProductRecord.build("sku-1", product_name="Mug")]))
    assert zoho.duplicates() == 0


def test_sales_order_with_unknown_product_fails_that_order_only(zoho: FakeZoho, client: ZohoClient) -> None:
    product = client.upsert_products([ProductRecord.build("SKU-9", product_name="Pen")])[0]
    good = SalesOrderRecord.build("s1-1", items=[OrderedItem.build(product.remote_id or "", quantity=1, list_price=1)])
    bad = SalesOrderRecord.build("s1-2", items=[OrderedItem.build("4150868000999999999", quantity=1, list_price=1)])
    outcomes = client.upsert_sales_orders([good, bad])
    assert [o.ok for o in outcomes] == [True, False]
    assert outcomes[1].error == "INVALID_DATA: the related id given seems to be invalid [Product_Name]"


def test_money_is_sent_as_numbers(zoho: FakeZoho, client: ZohoClient) -> None:
    client.upsert_deals([deal("s1-1", "19.999")])
    [stored] = zoho.records("Deals")
    assert stored["Amount"] == 20  # rounded half-up to cents, sent as a JSON number
    assert DealRecord.build("x", deal_name="d", amount=Decimal("5"), stage="s", closing_date="2025-01-01").amount == (
        Decimal("5.00")
    )


def test_empty_input_makes_no_request(zoho: FakeZoho, client: ZohoClient) -> None:
    assert client.upsert_contacts([]) == []
    assert zoho.requests == []


# --- helpers for raw payloads ------------------------------------------------------------------------


class _Raw:
    def __init__(self, key: str, body: dict[str, object]) -> None:
        self._key, self._body = key, body

    @property
    def key(self) -> str:
        return self._key

    def to_zoho(self) -> dict[str, object]:
        return dict(self._body)
