"""REST details of the fake shop over raw HTTP: paging headers, auth order, trash, control API, data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal

import httpx
import pytest

from storeloop.integrations.woocommerce.fake import FakeWooShop

AUTH = ("ck_test", "cs_test")


def test_link_headers_keep_params_and_swap_page(shop: FakeWooShop) -> None:
    url = f"{shop.api_url}/orders"
    middle = httpx.get(url, params={"per_page": 50, "page": 2, "orderby": "id", "order": "asc"}, auth=AUTH)
    assert (middle.headers["x-wp-total"], middle.headers["x-wp-totalpages"]) == ("250", "5")
    assert middle.headers.get_list("link") == [
        f'<{url}?per_page=50&orderby=id&order=asc&page=1>; rel="prev"',
        f'<{url}?per_page=50&orderby=id&order=asc&page=3>; rel="next"',
    ]
    assert set(middle.links) == {"prev", "next"}
    first = httpx.get(url, params={"per_page": 50}, auth=AUTH)
    assert set(first.links) == {"next"}
    last = httpx.get(url, params={"per_page": 50, "page": 5}, auth=AUTH)
    assert set(last.links) == {"prev"}
    beyond = httpx.get(url, params={"per_page": 50, "page": 9}, auth=AUTH)
    assert (beyond.status_code, beyond.json()) == (200, [])
    default = httpx.get(url, auth=AUTH)
    assert len(default.json()) == 10  # WordPress default per_page


def test_query_params_are_checked_before_basic_auth(shop: FakeWooShop) -> None:
    url = f"{shop.api_url}/orders/1000"
    wrong_query = httpx.get(url, params={"consumer_key": "ck_test", "consumer_secret": "nope"}, auth=AUTH)
    assert wrong_query.status_code == 401
    assert wrong_query.json()["message"] == "Consumer secret is invalid."
    only_key = httpx.get(url, params={"consumer_key": "ck_bogus"}, auth=AUTH)
    assert only_key.status_code == 200  # both params are needed before the query wins


def test_dates_without_zone_use_site_time_unless_gmt() -> None:
    # 100k orders over two years: one every ~10 minutes, so an hour's shift shows.
    with FakeWooShop(initial_orders=100_000, seed=5) as dense:
        target = dense.get_order(90_000)
        url = f"{dense.api_url}/orders"
        expected = str(100_000 - (90_000 - 1000) - 1)
        gmt = httpx.get(url, params={"modified_after": target["date_modified_gmt"], "dates_are_gmt": "1"}, auth=AUTH)
        local = httpx.get(url, params={"modified_after": target["date_modified"]}, auth=AUTH)
        assert gmt.headers["x-wp-total"] == local.headers["x-wp-total"] == expected
        misread = httpx.get(url, params={"modified_after": target["date_modified"], "dates_are_gmt": "true"}, auth=AUTH)
        assert int(misread.headers["x-wp-total"]) < int(expected)  # site time read as UTC: hours off


def test_trash_then_permanent_delete(shop: FakeWooShop) -> None:
    url = f"{shop.api_url}/orders/1005"
    trashed = httpx.delete(url, auth=AUTH)
    assert (trashed.status_code, trashed.json()["status"]) == (200, "trash")
    assert httpx.delete(url, auth=AUTH).json()["code"] == "woocommerce_rest_already_trashed"
    listed = httpx.get(f"{shop.api_url}/orders", params={"per_page": 100, "orderby": "id", "order": "asc"}, auth=AUTH)
    assert listed.headers["x-wp-total"] == "249"
    in_trash = httpx.get(f"{shop.api_url}/orders", params={"status": "trash"}, auth=AUTH)
    assert [o["id"] for o in in_trash.json()] == [1005]
    gone = httpx.delete(url, params={"force": "true"}, auth=AUTH)
    assert gone.status_code == 200
    missing = httpx.get(url, auth=AUTH)
    assert (missing.status_code, missing.json()["code"]) == (404, "woocommerce_rest_shop_order_invalid_id")


def test_put_and_post_update_an_order(shop: FakeWooShop) -> None:
    before = shop.get_order(1010)
    response = httpx.put(
        f"{shop.api_url}/orders/1010",
        json={
            "status": "on-hold",
            "billing": {"phone": "+49 30 999"},
            "meta_data": [{"key": "_cod_verified", "value": "no"}],
        },
        auth=AUTH,
    )
    order = response.json()
    assert response.status_code == 200
    assert order["status"] == "on-hold"
    assert order["billing"]["phone"] == "+49 30 999"
    assert order["billing"]["email"] == before["billing"]["email"]
    assert {"key": "_cod_verified", "value": "no"}.items() <= order["meta_data"][-1].items()
    assert order["date_modified_gmt"] >= before["date_modified_gmt"]
    via_post = httpx.post(f"{shop.api_url}/orders/1010", json={"status": "processing"}, auth=AUTH)
    assert via_post.json()["status"] == "processing"  # WordPress routes POST/PATCH to the update handler


def test_refunds_render_as_negative_strings(shop: FakeWooShop) -> None:
    order = shop.create_order(payment_method="stripe", status="completed")
    refunded = shop.refund_order(order["id"], Decimal("5.00"), reason="Damaged")
    assert refunded["refunds"][0]["total"] == "-5.00"
    assert refunded["status"] == "completed"
    rest = Decimal(order["total"]) - Decimal("5.00")
    fully = shop.refund_order(order["id"], rest)
    assert fully["status"] == "refunded"
    assert sum(-Decimal(r["total"]) for r in fully["refunds"]) == Decimal(order["total"])


def test_order_json_shape(shop: FakeWooShop) -> None:
    response = httpx.get(f"{shop.api_url}/orders/1042", auth=AUTH)
    order = response.json()
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    for key in ("total", "total_tax", "shipping_total", "discount_total", "cart_tax"):
        assert isinstance(order[key], str)
        assert len(order[key].split(".")[1]) == 2
    assert isinstance(order["id"], int)
    assert isinstance(order["customer_id"], int)
    assert len(order["date_created_gmt"]) == 19
    assert order["date_created_gmt"][10] == "T"
    item = order["line_items"][0]
    assert isinstance(item["price"], int | float)
    assert isinstance(item["subtotal"], str)
    assert order["_links"]["self"][0]["href"] == f"{shop.api_url}/orders/1042"
    line_total = sum(Decimal(li["total"]) for li in order["line_items"])
    assert line_total + Decimal(order["shipping_total"]) + Decimal(order["total_tax"]) == Decimal(order["total"])


def test_generated_data_is_messy_like_real_shops() -> None:
    shop = FakeWooShop(initial_orders=2000, seed=11)
    orders = [r.data for r in (shop.orders.get(1000 + i) for i in range(2000)) if r is not None]
    methods = Counter(o["payment_method"] for o in orders)
    assert 0.15 < methods["cod"] / 2000 < 0.25
    assert {o["payment_method_title"] for o in orders if o["payment_method"] == "cod"} == {"Cash on delivery"}
    assert {"stripe", "paypal", "bacs"} <= set(methods)
    guests = [o for o in orders if o["customer_id"] == 0]
    assert 0.3 < len(guests) / 2000 < 0.6
    guest_emails = Counter(o["billing"]["email"].strip().lower() for o in guests)
    assert guest_emails.most_common(1)[0][1] >= 3
    emails = [o["billing"]["email"] for o in orders]
    assert any(e != e.strip() for e in emails)
    assert any(e != e.lower() for e in emails)
    countries = {o["billing"]["country"] for o in orders}
    assert {"DE", "FR", "GB", "US", "IN", "BR", "ES", "PL", "JP", "EG"} <= countries
    phones = {o["billing"]["phone"] for o in orders}
    assert any(p.startswith("+") for p in phones)
    assert any(p.startswith("0") for p in phones)
    assert "" in phones
    assert {o["status"] for o in orders} >= {"completed", "processing", "cancelled", "refunded", "on-hold"}
    assert any(o["refunds"] for o in orders if o["status"] == "completed")
    assert all(o["refunds"][0]["total"].startswith("-") for o in orders if o["refunds"])
    names = {(c["first_name"], c["last_name"]) for c in (shop.get_customer(i) for i in range(2, 6))}
    assert names == {("Zoë", "Müller"), ("José", "Álvarez"), ("Łukasz", "Wójcik"), ("太郎", "山田")}
    assert len(shop.products) >= 40
    assert any(p.data["type"] == "variable" for p in shop.products.values())


def test_unicode_is_php_escaped_on_the_wire(shop: FakeWooShop) -> None:
    raw = httpx.get(f"{shop.api_url}/customers/2", auth=AUTH).content
    assert b"Zo\\u00eb" in raw
    assert json.loads(raw)["first_name"] == "Zoë"


def test_control_api(shop: FakeWooShop) -> None:
    created = httpx.post(f"{shop.url}/__fake__/orders", json={"payment_method": "cod", "status": "processing"})
    assert created.status_code == 201
    assert created.json()["payment_method_title"] == "Cash on delivery"
    state = httpx.get(f"{shop.url}/__fake__/state").json()
    assert (state["orders"], state["changed_orders"]) == (251, 1)
    assert httpx.get(f"{shop.url}/__fake__/nope").status_code == 404
    assert httpx.get(f"{shop.url}/wp-json/wc/v3/nothing", auth=AUTH).json()["code"] == "rest_no_route"


def test_activity_stream_creates_and_changes_orders(shop: FakeWooShop) -> None:
    shop.start_activity(orders_per_minute=6000, status_change_ratio=0.3, refund_ratio=0.1)
    try:
        deadline = time.monotonic() + 10
        while shop.orders.count() < 270 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling with a deadline
    finally:
        shop.stop_activity()
    assert shop.orders.count() >= 270
    assert len(shop.orders.records) > 20  # new orders plus changed recent ones


@pytest.mark.slow
def test_module_entry_point_runs_until_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "storeloop.integrations.woocommerce.fake",
            "--port",
            "0",
            "--initial-orders",
            "20",
            "--orders-per-minute",
            "600",
            "--consumer-key",
            "ck_demo",
            "--consumer-secret",
            "cs_demo",
            "--seed",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        response = httpx.get(f"{info['url']}/wp-json/wc/v3/orders", auth=("ck_demo", "cs_demo"))
        assert response.status_code == 200
        assert int(response.headers["x-wp-total"]) >= 20
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
