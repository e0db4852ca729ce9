"""The httpx client against the running fake shop (and a MockTransport for odd bodies)."""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx
import pytest

from storeloop.core.errors import TerminalError, TransientError
from storeloop.integrations.woocommerce.client import WooCommerceClient
from storeloop.integrations.woocommerce.errors import (
    WooAuthError,
    WooBadRequest,
    WooNotFound,
    WooPayloadError,
    WooTransientError,
)
from storeloop.integrations.woocommerce.fake import FakeWooShop


def statuses(shop: FakeWooShop) -> list[int]:
    return [r.status for r in shop.requests]


def test_pagination_exact_pages_and_ids(shop: FakeWooShop, client: WooCommerceClient) -> None:
    first = client.list_orders_page(1, 100, orderby="id", order="asc")
    assert (first.total, first.total_pages, first.has_next) == (250, 3, True)
    assert [o.id for o in first.items] == list(range(1000, 1100))
    last = client.list_orders_page(3, 100, orderby="id", order="asc")
    assert (last.total, last.total_pages, last.has_next) == (250, 3, False)
    assert [o.id for o in last.items] == list(range(1200, 1250))
    newest_first = client.list_orders_page(1, 5, orderby="date", order="desc")
    assert [o.id for o in newest_first.items] == [1249, 1248, 1247, 1246, 1245]


def test_iter_orders_follows_every_page_once(shop: FakeWooShop, client: WooCommerceClient) -> None:
    shop.clear_requests()
    orders = list(client.iter_orders(per_page=100))
    assert [o.id for o in orders] == list(range(1000, 1250))  # modified asc == id order for history
    modified = [o.date_modified_gmt for o in orders]
    assert modified == sorted(modified)
    assert [(r.method, r.path, r.status) for r in shop.requests] == [("GET", "/orders", 200)] * 3


def test_modified_after_is_exclusive_and_combines_with_before(shop: FakeWooShop, client: WooCommerceClient) -> None:
    cutoff = client.get_order(1200).date_modified_gmt
    after = client.list_orders_page(1, 100, modified_after=cutoff)
    assert after.total == 49
    assert [o.id for o in after.items] == list(range(1201, 1250))
    window = client.list_orders_page(
        1, 100, modified_after=cutoff, modified_before=client.get_order(1210).date_modified_gmt
    )
    assert [o.id for o in window.items] == list(range(1201, 1210))
    assert all(o.date_modified_gmt > cutoff for o in after.items)


def test_changed_order_moves_to_the_end_of_the_modified_order(shop: FakeWooShop, client: WooCommerceClient) -> None:
    cutoff = client.get_order(1249).date_modified_gmt
    shop.set_status(1003, "cancelled")
    page = client.list_orders_page(1, 100, modified_after=cutoff)
    assert [(o.id, o.status) for o in page.items] == [(1003, "cancelled")]
    assert client.list_orders_page(1, 100).total == 250


def test_status_and_include_filters(shop: FakeWooShop, client: WooCommerceClient) -> None:
    processing = list(client.iter_orders(status="processing"))
    assert processing
    assert {o.status for o in processing} == {"processing"}
    several = list(client.iter_orders(status=["completed", "refunded"]))
    assert {o.status for o in several} <= {"completed", "refunded"}
    assert len(processing) + len(several) < 250
    picked = client.list_orders_page(1, 10, include=[1010, 1005, 1100], orderby="include")
    assert [o.id for o in picked.items] == [1010, 1005, 1100]


def test_naive_datetimes_are_refused(client: WooCommerceClient) -> None:
    with pytest.raises(ValueError, match="aware"):
        client.list_orders_page(modified_after=datetime(2024, 1, 1))


@pytest.mark.parametrize("per_page", [0, 101, -5])
def test_per_page_out_of_range_fails_before_any_request(
    shop: FakeWooShop, client: WooCommerceClient, per_page: int
) -> None:
    shop.clear_requests()
    with pytest.raises(ValueError, match="per_page"):
        client.list_orders_page(1, per_page)
    with pytest.raises(ValueError, match="per_page"):
        list(client.iter_orders(per_page=per_page))
    assert shop.requests == []


def test_server_rejects_per_page_out_of_range(shop: FakeWooShop) -> None:
    response = httpx.get(f"{shop.api_url}/orders", params={"per_page": 101}, auth=("ck_test", "cs_test"))
    assert response.status_code == 400
    assert response.json() == {
        "code": "rest_invalid_param",
        "message": "Invalid parameter(s): per_page",
        "data": {
            "status": 400,
            "params": {"per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"},
        },
    }


def test_good_credentials(client: WooCommerceClient) -> None:
    client.check_credentials()


def test_query_string_auth(shop: FakeWooShop) -> None:
    with WooCommerceClient(shop.url, "ck_test", "cs_test", auth="query") as query_client:
        query_client.check_credentials()
        assert query_client.get_order(1001).id == 1001


def test_query_auth_secret_never_reaches_the_httpx_log(shop: FakeWooShop, caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO, logger="httpx"),
        WooCommerceClient(shop.url, "ck_test", "cs_test", auth="query") as query_client,
    ):
        query_client.get_order(1001)
    assert any("/orders/1001" in r.getMessage() for r in caplog.records)
    assert all("cs_test" not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("key", "secret", "message"),
    [
        ("ck_test", "cs_wrong", "Consumer secret is invalid."),
        ("ck_other", "cs_test", "Consumer key is invalid."),
    ],
)
@pytest.mark.parametrize("auth", ["basic", "query"])
def test_bad_credentials_are_terminal(
    shop: FakeWooShop,
    sleeps: list[float],
    key: str,
    secret: str,
    message: str,
    auth: Literal["basic", "query"],
) -> None:
    shop.clear_requests()
    with (
        WooCommerceClient(shop.url, key, secret, auth=auth, sleep=sleeps.append) as bad,
        pytest.raises(WooAuthError) as caught,
    ):
        bad.check_credentials()
    assert sleeps == []
    error = caught.value
    assert (error.status, error.wc_code, error.message) == (
        401,
        "woocommerce_rest_authentication_error",
        message,
    )
    assert isinstance(error, TerminalError)
    assert statuses(shop) == [401]


def test_no_credentials(shop: FakeWooShop) -> None:
    response = httpx.get(f"{shop.api_url}/orders")
    assert response.status_code == 401
    assert response.json()["code"] == "woocommerce_rest_cannot_view"
    assert httpx.get(f"{shop.api_url}/orders/1000").json()["message"] == "Sorry, you cannot view this resource."


def test_not_found_is_terminal_and_not_retried(
    shop: FakeWooShop, client: WooCommerceClient, sleeps: list[float]
) -> None:
    shop.clear_requests()
    with pytest.raises(WooNotFound) as caught:
        client.get_order(999_999)
    assert (caught.value.status, caught.value.wc_code, caught.value.message) == (
        404,
        "woocommerce_rest_shop_order_invalid_id",
        "Invalid ID.",
    )
    with pytest.raises(WooNotFound):
        client.get_customer(999_999)
    with pytest.raises(WooNotFound):
        client.get_product(999_999)
    assert statuses(shop) == [404, 404, 404]
    assert sleeps == []


def test_bad_request_is_terminal(client: WooCommerceClient) -> None:
    with pytest.raises(WooBadRequest) as caught:
        client.update_order(1000, status="shipped")
    assert (caught.value.status, caught.value.wc_code) == (400, "rest_invalid_param")


def test_429_honours_retry_after_then_succeeds(
    shop: FakeWooShop, client: WooCommerceClient, sleeps: list[float]
) -> None:
    shop.clear_requests()
    shop.faults.fail_next, shop.faults.fail_next_status = 1, 429
    assert client.get_order(1001).id == 1001
    assert statuses(shop) == [429, 200]
    assert sleeps == [0.05]  # Retry-After: 1, capped at backoff_max


def test_5xx_retried_then_raised_after_max_retries(
    shop: FakeWooShop, client: WooCommerceClient, sleeps: list[float]
) -> None:
    shop.clear_requests()
    shop.faults.fail_next, shop.faults.fail_next_status = 5, 503
    with pytest.raises(WooTransientError) as caught:
        client.get_order(1001)
    assert caught.value.status == 503
    assert isinstance(caught.value, TransientError)
    assert statuses(shop) == [503, 503, 503]  # 1 try + max_retries=2
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.01
    assert 0 <= sleeps[1] <= 0.02  # full jitter under base * 2**attempt


def test_random_500s_are_absorbed(shop: FakeWooShop, sleeps: list[float]) -> None:
    shop.faults.error_rate = 0.3
    with WooCommerceClient(
        shop.url,
        "ck_test",
        "cs_test",
        max_retries=8,
        backoff_base=0.001,
        backoff_max=0.001,
        sleep=sleeps.append,
    ) as patient:
        assert len(list(patient.iter_orders(per_page=20))) == 250
    assert len(sleeps) == sum(1 for s in statuses(shop) if s >= 500) > 0


def test_post_is_not_retried_after_a_500(shop: FakeWooShop, client: WooCommerceClient) -> None:
    shop.clear_requests()
    shop.faults.fail_next, shop.faults.fail_next_status = 1, 500
    with pytest.raises(WooTransientError):
        client.create_webhook(name="x", topic="order.created", delivery_url="http://127.0.0.1:9/x", secret="s")
    assert statuses(shop) == [500]
    assert shop.webhooks == []
    shop.faults.fail_next, shop.faults.fail_next_status = 1, 429
    hook = client.create_webhook(name="x", topic="order.created", delivery_url="http://127.0.0.1:9/x", secret="s")
    assert statuses(shop)[1:] == [429, 201]
    assert [w["id"] for w in shop.webhooks] == [hook.id]


def test_timeouts_are_transient(shop: FakeWooShop, sleeps: list[float]) -> None:
    shop.clear_requests()
    shop.faults.latency_ms = 300
    with (
        WooCommerceClient(
            shop.url, "ck_test", "cs_test", timeout=httpx.Timeout(0.1), max_retries=1, sleep=sleeps.append
        ) as impatient,
        pytest.raises(WooTransientError) as caught,
    ):
        impatient.get_order(1001)
    assert (caught.value.status, caught.value.wc_code) == (None, "timeout")
    assert len(sleeps) == 1
    deadline = time.monotonic() + 5
    while len(shop.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(shop.requests) == 2


def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        WooCommerceClient(f"http://127.0.0.1:{port}", "ck", "cs", max_retries=1, sleep=lambda _: None) as dead,
        pytest.raises(WooTransientError) as caught,
    ):
        dead.check_credentials()
    assert caught.value.wc_code == "connection_error"


def test_webhook_crud(shop: FakeWooShop, client: WooCommerceClient) -> None:
    created = client.create_webhook(
        name="Storeloop", topic="order.updated", delivery_url="http://127.0.0.1:9/hook", secret="s3cret"
    )
    assert (created.status, created.topic, created.resource, created.event) == (
        "active",
        "order.updated",
        "order",
        "updated",
    )
    assert "secret" not in created.raw
    paused = client.update_webhook(created.id, status="paused")
    assert paused.status == "paused"
    assert [w.id for w in client.list_webhooks()] == [created.id]
    assert client.list_webhooks(status="active") == []
    client.delete_webhook(created.id)
    assert client.list_webhooks() == []
    with pytest.raises(WooNotFound):
        client.delete_webhook(created.id)
    with pytest.raises(ValueError, match="secret"):
        client.create_webhook(name="x", topic="order.created", delivery_url="http://x", secret="")


def test_customers_and_products(client: WooCommerceClient) -> None:
    customers = client.list_customers_page(1, 100)
    assert customers.total == 50
    assert [c.id for c in customers.items] == list(range(2, 52))
    zoe = client.get_customer(2)
    assert (zoe.first_name, zoe.last_name) == ("Zoë", "Müller")
    found = client.list_customers_page(email=f"  {zoe.email.upper()} ")
    assert [c.id for c in found.items] == [2]
    products = client.list_products_page(1, 100)
    assert all(p.type != "variation" for p in products.items)
    variable = next(p for p in products.items if p.type == "variable")
    variation = client.get_product(variable.raw["variations"][0])
    assert (variation.type, variation.parent_id) == ("variation", variable.id)
    recent = client.list_products_page(modified_after=datetime.now(UTC) - timedelta(days=1))
    assert recent.total == 0


def test_odd_bodies_via_mock_transport() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/orders/1"):
            return httpx.Response(200, content=b"<html>Under maintenance</html>", headers={"Content-Type": "text/html"})
        if request.url.path.endswith("/orders/2"):
            body = b'\xef\xbb\xbf{"id":2,"status":"pending","currency":"EUR","total":"1.00",'
            body += b'"date_created_gmt":"2024-01-01T00:00:00","date_modified_gmt":"2024-01-01T00:00:00"}'
            return httpx.Response(200, content=body)
        # A list without paging headers (stripped by a proxy).
        return httpx.Response(200, json=[], headers={})

    with WooCommerceClient("https://shop.example", "ck", "cs", transport=httpx.MockTransport(handler)) as mocked:
        with pytest.raises(WooPayloadError, match="non-JSON"):
            mocked.get_order(1)
        assert mocked.get_order(2).id == 2  # UTF-8 BOM before the JSON
        page = mocked.list_orders_page(1, 100)
        assert (page.total, page.total_pages, page.has_next) == (0, 1, False)
        assert mocked.api_url == "https://shop.example/wp-json/wc/v3"
