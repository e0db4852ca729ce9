"""The HTTP API through its public interface: access rules, shapes, filters, errors."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from conftest import ApiClient
from django.db import transaction
from django.test import Client

from storeloop.contacts.services import PersonData, resolve_contact
from storeloop.orders.models import Order, OrderLine

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def make_order(
    store: Any,
    external_id: int,
    *,
    status: str = "processing",
    minutes: int = 0,
    email: str = "ann@example.com",
) -> Order:
    with transaction.atomic():
        contact = resolve_contact(store, PersonData.from_raw(email=email, phone="07700 900123", country="GB"))
        order = Order.objects.create(
            store=store,
            external_id=external_id,
            number=str(external_id),
            contact=contact,
            status=status,
            currency="EUR",
            total=Decimal("42.50"),
            payment_method="cod",
            is_cod=True,
            date_created=T0,
            date_modified=T0 + dt.timedelta(minutes=minutes),
        )
        OrderLine.objects.create(
            order=order,
            external_id=external_id * 10,
            product_external_id=93,
            name="Mug",
            quantity=2,
            subtotal=Decimal("40.00"),
            total=Decimal("40.00"),
        )
    return order


ENDPOINTS = [
    "/api/v1/orders",
    "/api/v1/contacts",
    "/api/v1/inbox",
    "/api/v1/system/health",
    "/api/v1/system/tasks/failed",
]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_endpoint_denies_without_a_key(path: str, store: Any) -> None:
    response = Client().get(path)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_endpoint_denies_a_bad_key(path: str, store: Any) -> None:
    assert ApiClient("slk_000000000000_nope").get(path).status_code == 401
    assert ApiClient("garbage").get(path).status_code == 401


def test_revoked_key_is_denied(store: Any) -> None:
    from storeloop.stores.services import create_api_key, revoke_api_key

    issued = create_api_key(store_id=store.pk)
    assert ApiClient(issued.plaintext).get("/api/v1/orders").status_code == 200
    revoke_api_key(prefix=issued.api_key.prefix)
    assert ApiClient(issued.plaintext).get("/api/v1/orders").status_code == 401


def test_order_shape(api: ApiClient, store: Any) -> None:
    order = make_order(store, 727)
    body = api.get("/api/v1/orders").json()
    assert body["count"] == 1
    assert body["next_offset"] is None
    item = body["items"][0]
    assert item["id"] == order.pk
    assert item["external_id"] == 727
    assert item["status"] == "processing"
    assert item["currency"] == "EUR"
    assert item["total"] == "42.50"
    assert item["date_created"] == "2026-03-01T12:00:00Z"
    assert item["payment_method"] == "cod"
    assert item["contact"] == {"id": order.contact_id, "email": "ann@example.com", "phone": "+447700900123"}
    assert item["lines"] == [{"product_external_id": 93, "name": "Mug", "sku": "", "quantity": 2, "total": "40.00"}]
    detail = api.get(f"/api/v1/orders/{order.pk}").json()
    assert detail["external_id"] == 727
    assert detail["refunds"] == []


def test_order_filters_and_pagination(api: ApiClient, store: Any) -> None:
    for n in range(1, 6):
        make_order(store, n, status="completed" if n % 2 else "processing", minutes=n)
    assert [o["external_id"] for o in api.get("/api/v1/orders", status="completed").json()["items"]] == [
        5,
        3,
        1,
    ]
    assert [o["external_id"] for o in api.get("/api/v1/orders", external_id=4).json()["items"]] == [4]
    after = (T0 + dt.timedelta(minutes=3)).isoformat()
    assert [o["external_id"] for o in api.get("/api/v1/orders", modified_after=after).json()["items"]] == [
        5,
        4,
    ]
    page = api.get("/api/v1/orders", limit=2, offset=2).json()
    assert page["count"] == 5
    assert page["next_offset"] == 4
    assert [o["external_id"] for o in page["items"]] == [3, 2]


def test_another_stores_order_is_404(api: ApiClient, store: Any, other_store: Any) -> None:
    foreign = make_order(other_store, 1)
    make_order(store, 2)
    assert [o["external_id"] for o in api.get("/api/v1/orders").json()["items"]] == [2]
    response = api.get(f"/api/v1/orders/{foreign.pk}")
    assert response.status_code == 404
    assert response.json()["code"] == "order_not_found"
    assert api.get(f"/api/v1/contacts/{foreign.contact_id}").status_code == 404


def test_validation_errors_are_422_and_name_the_field(api: ApiClient, store: Any) -> None:
    bad_date = api.get("/api/v1/orders", modified_after="yesterday")
    assert bad_date.status_code == 422
    body = bad_date.json()
    assert body["code"] == "validation_error"
    assert [d["field"] for d in body["details"]] == ["modified_after"]
    bad_limit = api.get("/api/v1/orders", limit=0)
    assert bad_limit.status_code == 422
    assert bad_limit.json()["details"] == [{"field": "limit", "error": "1..200"}]
    assert api.get("/api/v1/orders/not-a-number").status_code == 422


def test_contacts_list_and_detail(api: ApiClient, store: Any) -> None:
    order = make_order(store, 1)
    listing = api.get("/api/v1/contacts").json()
    assert listing["count"] == 1
    assert listing["items"][0]["email"] == "ann@example.com"
    assert listing["items"][0]["order_count"] == 1
    detail = api.get(f"/api/v1/contacts/{order.contact_id}").json()
    assert sorted((i["kind"], i["value"]) for i in detail["identities"]) == [
        ("email", "ann@example.com"),
        ("phone", "+447700900123"),
    ]
    assert api.get("/api/v1/contacts", email="ANN@example.com ").json()["count"] == 1


def test_merge_through_the_api(api: ApiClient, store: Any) -> None:
    a = make_order(store, 1, email="a@example.com")
    with transaction.atomic():
        b = resolve_contact(store, PersonData.from_raw(email="b@example.com", phone=None, country="GB"))
    assert b is not None
    response = api.post(f"/api/v1/contacts/{a.contact_id}/merge", {"source_id": b.pk, "reason": "same person"})
    assert response.status_code == 200
    assert response.json()["moved_identities"] == 1
    missing_reason = api.post(f"/api/v1/contacts/{a.contact_id}/merge", {"source_id": b.pk})
    assert missing_reason.status_code == 422


def test_health_shows_queue_and_only_this_stores_webhooks(api: ApiClient, store: Any, other_store: Any) -> None:
    from storeloop.stores.models import StoreWebhook

    StoreWebhook.objects.create(store=store, topic="order.updated", external_id=1, state="disabled")
    StoreWebhook.objects.create(store=other_store, topic="order.updated", external_id=2)
    body = api.get("/api/v1/system/health").json()
    assert set(body["queue"]) == {"ready", "scheduled", "running", "failed", "oldest_ready_age_seconds"}
    assert [s["store_id"] for s in body["stores"]] == [store.pk]
    assert body["stores"][0]["webhooks_ok"] is False
    assert body["stores"][0]["webhooks"][0]["state"] == "disabled"


def test_healthz_needs_no_auth() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_openapi_and_docs_are_served() -> None:
    schema = Client().get("/api/v1/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/orders" in paths
    assert "/api/v1/orders/{order_id}" in paths
    assert Client().get("/api/v1/docs").status_code == 200


def _dead_letter() -> str:
    from django.utils import timezone
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    from storeloop.core.tasks import enqueue_on_commit
    from storeloop.inbox.tasks import process_inbox_delivery

    with transaction.atomic():
        enqueue_on_commit(process_inbox_delivery, "123")
    row = DBTaskResult.objects.get()
    DBTaskResult.objects.filter(pk=row.pk).update(
        status=TaskResultStatus.FAILED, finished_at=timezone.now(), exception_class_path="builtins.RuntimeError"
    )
    return str(row.pk)


def test_dead_letters_need_an_operator_key(api: ApiClient, store: Any) -> None:
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    task_id = _dead_letter()
    listing = api.get("/api/v1/system/tasks/failed")
    assert listing.status_code == 403
    assert listing.json()["code"] == "operator_key_required"
    retry = api.post(f"/api/v1/system/tasks/{task_id}/retry")
    assert retry.status_code == 403
    assert DBTaskResult.objects.get(pk=task_id).status == TaskResultStatus.FAILED  # nothing changed


def test_an_operator_key_lists_and_retries_dead_letters(store: Any) -> None:
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    from storeloop.stores.services import create_api_key

    operator = ApiClient(create_api_key(store_id=store.pk, operator=True).plaintext)
    task_id = _dead_letter()
    listing = operator.get("/api/v1/system/tasks/failed")
    assert listing.status_code == 200
    body = listing.json()
    assert body["count"] == 1
    assert body["items"][0]["id"] == task_id
    assert body["items"][0]["task"] == "storeloop.inbox.tasks.process_inbox_delivery"
    assert body["items"][0]["error"] == "builtins.RuntimeError"
    assert operator.post(f"/api/v1/system/tasks/{task_id}/retry").json() == {"status": "requeued", "id": task_id}
    assert DBTaskResult.objects.get(pk=task_id).status == TaskResultStatus.READY
    missing = operator.post("/api/v1/system/tasks/00000000-0000-0000-0000-000000000000/retry")
    assert missing.status_code == 404
    assert missing.json()["code"] == "task_not_found"
