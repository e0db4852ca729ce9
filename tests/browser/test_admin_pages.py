"""The admin in a real browser: log in through the form, follow links to an order, see the inbox."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import Page, expect

from storeloop.inbox.models import InboxDelivery
from storeloop.orders.models import Order
from tests.drain import drain
from tests.woo import body_of, delivery_headers, order_payload

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-long-password-1"


@pytest.fixture
def order(store: Any) -> Order:
    """An order mirrored the way production gets one: a signed webhook, then the worker."""
    body = body_of(order_payload(number="S-727"))
    response = Client().post(
        f"/webhooks/woocommerce/{store.pk}",
        body,
        content_type="application/json",
        headers=delivery_headers("whsec-test", body, delivery_id="d-browser-1"),
    )
    assert response.status_code == 200
    drain()
    return Order.objects.get()


@pytest.fixture
def superuser(db: None) -> Any:
    return get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)


def log_in(page: Page, password: str = PASSWORD) -> None:
    page.goto("/admin/")
    expect(page).to_have_url("/admin/login/?next=/admin/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_log_in_open_an_order_and_the_inbox(page: Page, superuser: Any, order: Order) -> None:
    log_in(page)
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()

    page.locator("#orders-order").get_by_role("link", name="Orders").click()
    expect(page).to_have_url("/admin/orders/order/")
    row = page.locator("#result_list tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td.field-total")).to_have_text("29.3500")  # money is stored with four decimals

    row.get_by_role("link", name="727", exact=True).click()
    expect(page).to_have_url(f"/admin/orders/order/{order.pk}/change/")
    expect(page.locator("#id_number")).to_have_value("S-727")
    expect(page.locator("#id_total")).to_have_value("29.3500")
    expect(page.locator("#id_currency")).to_have_value("USD")

    page.goto("/admin/inbox/inboxdelivery/")
    delivery = InboxDelivery.objects.get()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.locator("td.field-topic")).to_have_text("order.updated")
    expect(rows.locator("td.field-status")).to_have_text("Processed")
    expect(rows.locator("th.field-id")).to_have_text(str(delivery.pk))


def test_wrong_password_stays_on_the_login_form(page: Page, superuser: Any) -> None:
    log_in(page, password="not-the-password")
    expect(page.locator(".errornote")).to_contain_text("Please enter the correct username and password")
    page.goto("/admin/orders/order/")
    expect(page).to_have_url("/admin/login/?next=/admin/orders/order/")
