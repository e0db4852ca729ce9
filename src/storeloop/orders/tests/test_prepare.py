"""Database-ready rows from snapshots (``orders.prepare``) and the indexes the bulk path writes to."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from django.db import connection
from hypothesis import given
from hypothesis import strategies as st
from tests.woo import order_payload

from storeloop.contacts.services import PersonData
from storeloop.integrations.woocommerce.fake import FakeWooShop, OrderQuery
from storeloop.integrations.woocommerce.models import parse_order
from storeloop.orders.mirror import payload_hash, person_from_order
from storeloop.orders.prepare import db_time, prepare_order, prepare_raw


def test_the_canonical_content_parses_back_to_the_same_snapshot() -> None:
    payload = order_payload()
    payload["_links"] = {"self": [{"href": "https://shop.example/wp-json/wc/v3/orders/727"}]}
    snapshot = parse_order(payload)
    prepared = prepare_order(snapshot)
    again = parse_order(orjson.loads(prepared.content))
    assert again == snapshot
    assert "_links" not in again.raw
    assert prepared.payload_hash == payload_hash(payload) == payload_hash(again.raw)


@given(
    st.datetimes(min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(dt.timedelta(hours=-9, minutes=-30))]),
)
def test_times_become_the_utc_text_django_stores(moment: dt.datetime, zone: dt.tzinfo) -> None:
    aware = moment.replace(tzinfo=zone)
    # Django's SQLite backend: the naive UTC value as str(); PostgreSQL sessions read it as UTC.
    assert db_time(aware) == str(aware.astimezone(dt.UTC).replace(tzinfo=None))
    assert db_time(None) is None


@pytest.mark.django_db
def test_single_column_indexes_covered_by_a_composite_one_are_gone() -> None:
    def single_column_indexes(table: str) -> set[str]:
        with connection.cursor() as cursor:
            constraints = connection.introspection.get_constraints(cursor, table)
        return {
            info["columns"][0]
            for info in constraints.values()
            if info["index"] and not info["unique"] and not info["primary_key"] and len(info["columns"]) == 1
        }

    assert single_column_indexes("orders_order") == {"contact_id"}
    assert single_column_indexes("orders_orderline") == {"product_id"}
    assert single_column_indexes("orders_orderrefund") == set()
    assert single_column_indexes("contacts_contact") == {"merged_into_id"}
    assert single_column_indexes("contacts_contactidentity") == {"contact_id"}


def test_the_person_carries_what_person_from_order_normalises() -> None:
    shop = FakeWooShop(consumer_key="ck", consumer_secret="cs", seed=9, initial_orders=1500)
    for data in shop.list_orders(OrderQuery(limit=10_000))[1]:
        snapshot = parse_order(data)
        email, phone, country, customer, first, last = prepare_order(snapshot).person
        person = PersonData.from_raw(
            email=email, phone=phone, country=country, woo_customer_id=customer, first_name=first, last_name=last
        )
        assert person == person_from_order(snapshot)
        assert prepare_raw(data).person == prepare_order(snapshot).person
