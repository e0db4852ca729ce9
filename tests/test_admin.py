"""The admin: every page an operator uses loads, and its actions work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from storeloop.core.tests import sample_tasks
from storeloop.inbox.models import InboxDelivery
from tests.drain import drain
from tests.woo import body_of, delivery_headers, order_payload

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(db: None) -> Client:
    get_user_model().objects.create_superuser("root", "", "a-long-password-1")
    client = Client()
    client.login(username="root", password="a-long-password-1")
    return client


def test_anonymous_is_sent_to_login() -> None:
    response = Client().get("/admin/orders/order/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_changelists_and_detail_pages_load(admin_client: Client, store: Any) -> None:
    body = body_of(order_payload())
    Client().post(
        f"/webhooks/woocommerce/{store.pk}",
        body,
        content_type="application/json",
        headers=delivery_headers("whsec-test", body),
    )
    drain()
    from storeloop.orders.models import Order

    order = Order.objects.get()
    for path in [
        "/admin/",
        "/admin/stores/store/",
        f"/admin/stores/store/{store.pk}/change/",
        "/admin/orders/order/",
        f"/admin/orders/order/{order.pk}/change/",
        "/admin/orders/product/",
        "/admin/contacts/contact/",
        f"/admin/contacts/contact/{order.contact_id}/change/",
        "/admin/inbox/inboxdelivery/",
        "/admin/core/deadletter/",
        "/admin/stores/apikey/",
    ]:
        response = admin_client.get(path)
        assert response.status_code == 200, path
    store_page = admin_client.get(f"/admin/stores/store/{store.pk}/change/").content.decode()
    assert "whsec-test" not in store_page
    assert "cs_test" not in store_page


def test_replay_action(admin_client: Client, store: Any) -> None:
    body = body_of(order_payload())
    Client().post(
        f"/webhooks/woocommerce/{store.pk}",
        body,
        content_type="application/json",
        headers=delivery_headers("whsec-test", body),
    )
    drain()
    row = InboxDelivery.objects.get()
    response = admin_client.post("/admin/inbox/inboxdelivery/", {"action": "replay", "_selected_action": [row.pk]})
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.status == "received"
    assert DBTaskResult.objects.filter(status=TaskResultStatus.READY).count() == 1
    drain()
    row.refresh_from_db()
    assert (row.status, row.outcome) == ("processed", "unchanged")


def test_dead_letter_retry_action(admin_client: Client, tmp_path: Path) -> None:
    sample_tasks.terminal.enqueue(str(tmp_path / "log"))
    drain()
    task = DBTaskResult.objects.get()
    assert task.status == TaskResultStatus.FAILED
    response = admin_client.post("/admin/core/deadletter/", {"action": "retry", "_selected_action": [str(task.pk)]})
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == TaskResultStatus.READY
