from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django_tasks_db.models import DBTaskResult
from tests.woo import body_of, delivery_headers, order_payload, sign

from storeloop.inbox.models import InboxDelivery

pytestmark = pytest.mark.django_db


def post(store_id: int, body: bytes, headers: dict[str, str], content_type: str = "application/json") -> Any:
    return Client().post(f"/webhooks/woocommerce/{store_id}", body, content_type=content_type, headers=headers)


def nothing_written() -> None:
    assert InboxDelivery.objects.count() == 0
    assert DBTaskResult.objects.count() == 0


def test_signed_delivery_is_stored_and_queued(store: Any) -> None:
    body = body_of(order_payload())
    response = post(store.pk, body, delivery_headers("whsec-test", body, delivery_id="abc"))
    assert response.status_code == 200
    row = InboxDelivery.objects.get()
    assert response.json() == {"status": "accepted", "delivery": row.pk}
    assert (row.source, row.store_id, row.topic, row.delivery_id, row.webhook_id) == (
        "woocommerce",
        store.pk,
        "order.updated",
        "abc",
        "12",
    )
    assert bytes(row.body) == body
    assert row.status == "received"
    task = DBTaskResult.objects.get()
    assert task.task_path == "storeloop.inbox.tasks.process_inbox_delivery"
    # Only the delivery's id goes into the queue: no personal data in task arguments.
    assert task.args_kwargs == {"args": [str(row.pk)], "kwargs": {}}


def test_bad_signature_is_rejected_and_nothing_is_written(store: Any) -> None:
    body = body_of(order_payload())
    headers = delivery_headers("wrong-secret", body)
    response = post(store.pk, body, headers)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    nothing_written()


def test_missing_signature_is_rejected(store: Any) -> None:
    body = body_of(order_payload())
    headers = delivery_headers("whsec-test", body)
    del headers["X-WC-Webhook-Signature"]
    assert post(store.pk, body, headers).status_code == 401
    nothing_written()


def test_signature_of_another_store_is_rejected(store: Any, other_store: Any) -> None:
    body = body_of(order_payload())
    assert post(store.pk, body, delivery_headers("whsec-other", body)).status_code == 401
    nothing_written()


def test_creation_ping_is_answered_200_without_storing(store: Any) -> None:
    response = post(store.pk, b"webhook_id=15", {}, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    nothing_written()


def test_signed_body_that_is_not_json_is_400(store: Any) -> None:
    body = b'{"id": 727, "status": '
    response = post(store.pk, body, delivery_headers("whsec-test", body))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    nothing_written()


def test_oversized_body_is_413(store: Any, settings: Any) -> None:
    settings.WEBHOOK_MAX_BYTES = 2048
    body = body_of(order_payload(customer_note="x" * 3000))
    response = post(store.pk, body, delivery_headers("whsec-test", body))
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    nothing_written()


def test_unknown_store_is_404(store: Any) -> None:
    body = body_of(order_payload())
    response = post(store.pk + 1000, body, delivery_headers("whsec-test", body))
    assert response.status_code == 404
    assert response.json()["code"] == "store_not_found"
    nothing_written()


def test_unknown_topic_is_stored_as_ignored_without_a_task(store: Any) -> None:
    body = body_of({"id": 5, "code": "SAVE10"})
    response = post(store.pk, body, delivery_headers("whsec-test", body, topic="coupon.created"))
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    row = InboxDelivery.objects.get()
    assert (row.status, row.topic) == ("ignored", "coupon.created")
    assert DBTaskResult.objects.count() == 0


def test_redelivery_of_the_same_delivery_is_a_no_op(store: Any) -> None:
    body = body_of(order_payload())
    headers = delivery_headers("whsec-test", body, delivery_id="same")
    assert post(store.pk, body, headers).json()["status"] == "accepted"
    second = post(store.pk, body, headers)
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "delivery": None}
    assert InboxDelivery.objects.count() == 1
    assert DBTaskResult.objects.count() == 1


def test_get_is_not_allowed(store: Any) -> None:
    assert Client().get(f"/webhooks/woocommerce/{store.pk}").status_code == 405


def test_signature_helper_matches_the_documented_algorithm() -> None:
    from storeloop.integrations.woocommerce.signature import compute_signature, verify_signature

    assert compute_signature("s", b"{}") == sign("s", b"{}")
    assert verify_signature("s", b"{}", sign("s", b"{}"))
    assert not verify_signature("s", b"{}", None)
    assert not verify_signature("s", b"{} ", sign("s", b"{}"))
