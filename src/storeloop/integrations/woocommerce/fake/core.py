"""Shared state of the fake shop: data, serialisation in the REST v3 shape, reads, webhook plumbing.

``FakeWooShop`` (shop.py) = ``ShopCore`` + mutations (mutations.py) + lifecycle/HTTP (server.py).
Everything that touches state holds ``self._lock``.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..client import API_PREFIX
from .catalogue import Product, build_catalogue
from .customers import CustomerDirectory, CustomerRecord
from .orders_gen import (
    History,
    OrderBuilder,
    OrderRecord,
    PeopleBook,
)
from .store import OrderQuery, OrderStore
from .util import RawJson, php_json, set_date

if TYPE_CHECKING:
    from .activity import ActivityStream

from .webhooks import (
    TOPIC_HOOKS,
    DeliveryRecord,
    Dispatcher,
    Faults,
    WebhookState,
)

FIRST_ORDER_ID = 1000


class ShopError(Exception):
    """A WooCommerce REST error; the server renders it as ``{"code","message","data":{"status"}}``."""

    def __init__(self, status: int, code: str, message: str, params: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.params = status, code, message, params

    def envelope(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status}
        if self.params:
            data["params"] = self.params
        return {"code": self.code, "message": self.message, "data": data}


def order_not_found() -> ShopError:
    return ShopError(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")


def customer_not_found() -> ShopError:
    return ShopError(404, "woocommerce_rest_invalid_id", "Invalid resource ID.")


def product_not_found() -> ShopError:
    return ShopError(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")


def webhook_not_found() -> ShopError:
    return ShopError(404, "woocommerce_rest_shop_webhook_invalid_id", "Invalid ID.")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str  # without the query string (it may hold credentials)
    status: int


def _site_tz(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


class ShopCore:
    """State, serialisation and reads; see ``FakeWooShop`` for the public entry point."""

    def __init__(
        self,
        *,
        consumer_key: str = "ck_test",
        consumer_secret: str = "cs_test",  # noqa: S107 - the fake shop's well-known test key
        seed: int = 1,
        currency: str = "EUR",
        site_url: str | None = None,
        initial_orders: int = 50,
        history_days: int = 730,
        site_timezone: str = "Europe/Berlin",
        clock: Callable[[], datetime] | None = None,
        delivery_timeout: float = 5.0,
    ) -> None:
        if initial_orders < 0:
            raise ValueError("initial_orders must be >= 0")
        self.consumer_key, self.consumer_secret, self.seed = consumer_key, consumer_secret, seed
        self.currency = currency
        self.faults = Faults()
        self._encoded: dict[int, bytes] = {}
        self._lock = threading.RLock()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.tz = _site_tz(site_timezone)
        self._site_url = site_url.rstrip("/") if site_url else None
        anchor = int(self._clock().timestamp()) // 60 * 60
        start = anchor - history_days * 86400
        products, self.sellables = build_catalogue(random.Random(seed * 31 + 5), start - 90 * 86400, self.tz)
        self.products: dict[int, Product] = {p.id: p for p in products}
        people = PeopleBook(
            seed,
            registered=min(max(initial_orders // 5, 25), 20_000),
            guests=min(max(initial_orders // 3, 40), 50_000),
        )
        self._people = people
        self._builder = OrderBuilder(tz=self.tz, currency=currency, sellables=self.sellables)
        history = History(
            seed=seed,
            n=initial_orders,
            start_ts=start,
            end_ts=anchor - 60,
            base_id=FIRST_ORDER_ID,
            people=people,
            builder=self._builder,
        )
        self.orders = OrderStore(history)
        self.customers = CustomerDirectory(seed=seed, people=people, start_ts=start, tz=self.tz)
        self._next_order_id = FIRST_ORDER_ID + initial_orders
        self._item_ids = itertools.count(200_000_000)
        self._refund_ids = itertools.count(60_000_000)
        self._rng = random.Random(seed * 7 + 1)
        self._fault_rng = random.Random(seed * 7 + 2)
        self._webhooks: dict[int, WebhookState] = {}
        self._webhook_ids = itertools.count(1)
        self.recent_order_ids: deque[int] = deque(
            range(max(FIRST_ORDER_ID, self._next_order_id - 50), self._next_order_id), maxlen=200
        )
        self._requests: list[RequestRecord] = []
        self._dispatcher = Dispatcher(
            get_webhook=self._webhook_for_delivery,
            build_payload=self._payload,
            on_result=self._delivery_result,
            faults=lambda: self.faults,
            source_url=lambda: self.site_url + "/",
            encode=php_json,
            rng=random.Random(seed * 7 + 3),
            timeout=delivery_timeout,
            clock=lambda: self._clock().timestamp(),
        )
        self._server: Any = None
        self._activity: ActivityStream | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake shop is not started")
        return str(self._server.url)

    @property
    def api_url(self) -> str:
        return self.url + API_PREFIX

    @property
    def site_url(self) -> str:
        """What the shop calls itself (links, X-WC-Webhook-Source); defaults to ``url``."""
        if self._site_url:
            return self._site_url
        return self.url if self._server is not None else "http://127.0.0.1"

    def now(self) -> int:
        return int(self._clock().timestamp())

    # --- serialisation -----------------------------------------------------------------------------

    def _links(self, collection: str, resource_id: int) -> dict[str, Any]:
        api = self.site_url + API_PREFIX
        return {
            "self": [{"href": f"{api}/{collection}/{resource_id}"}],
            "collection": [{"href": f"{api}/{collection}"}],
        }

    def order_json(self, record: OrderRecord) -> dict[str, Any]:
        out = dict(record.data)
        out["payment_url"] = (
            f"{self.site_url}/checkout/order-pay/{record.id}/?pay_for_order=true&key={record.data['order_key']}"
        )
        links = self._links("orders", record.id)
        if record.data["customer_id"]:
            links["customer"] = [{"href": f"{self.site_url}{API_PREFIX}/customers/{record.data['customer_id']}"}]
        out["_links"] = links
        return out

    def customer_json(self, record: CustomerRecord) -> dict[str, Any]:
        return {**record.data, "_links": self._links("customers", record.id)}

    def product_json(self, product: Product) -> dict[str, Any]:
        slug = product.data["slug"]
        links = self._links("products", product.id)
        if product.data["parent_id"]:
            links["up"] = [{"href": f"{self.site_url}{API_PREFIX}/products/{product.data['parent_id']}"}]
        return {**product.data, "permalink": f"{self.site_url}/product/{slug}/", "_links": links}

    def webhook_json(self, w: WebhookState) -> dict[str, Any]:
        resource, _, event = w.topic.partition(".")
        data: dict[str, Any] = {
            "id": w.id,
            "name": w.name,
            "status": w.status,
            "topic": w.topic,
            "resource": resource,
            "event": event,
            "hooks": TOPIC_HOOKS.get(w.topic, []),
            "delivery_url": w.delivery_url,
        }
        set_date(data, "date_created", w.created_ts, self.tz)
        set_date(data, "date_modified", w.modified_ts, self.tz)
        data["_links"] = self._links("webhooks", w.id)
        return data

    # --- reads ------------------------------------------------------------------------------------

    def get_order(self, order_id: int) -> dict[str, Any]:
        with self._lock:
            record = self.orders.get(order_id)
            if record is None:
                raise order_not_found()
            return self.order_json(record)

    def list_orders(self, query: OrderQuery) -> tuple[int, list[dict[str, Any]]]:
        with self._lock:
            total, records = self.orders.query(query)
            return total, [self.order_json(r) for r in records]

    def list_orders_encoded(self, query: OrderQuery) -> tuple[int, RawJson]:
        """``list_orders`` as the response body. Unchanged historical orders are a pure function of
        their id, so their encoded JSON is cached: a big shop then serves pages at network speed."""
        with self._lock:
            total, entries = self.orders.query_lazy(query)
            parts = []
            for entry in entries:
                if isinstance(entry, int):  # an unchanged historical order, by id
                    encoded = self._encoded.get(entry)
                    if encoded is None:
                        history = self.orders.history
                        encoded = self._encoded[entry] = php_json(
                            self.order_json(history.build(entry - history.base_id))
                        )
                else:
                    encoded = php_json(self.order_json(entry))
                parts.append(encoded)
            return total, RawJson(b"[" + b",".join(parts) + b"]")

    def prerender_history(self) -> int:
        """Encode every unchanged historical order now (benchmarks call this before timing)."""
        for order_id in range(self.orders.history.base_id, self.orders.history.base_id + self.orders.history.n):
            with self._lock:
                record = self.orders.get(order_id)
                if record is not None and order_id not in self.orders.records and order_id not in self._encoded:
                    self._encoded[order_id] = php_json(self.order_json(record))
        return len(self._encoded)

    def get_customer(self, customer_id: int) -> dict[str, Any]:
        with self._lock:
            record = self.customers.get(customer_id)
            if record is None:
                raise customer_not_found()
            return self.customer_json(record)

    def get_product(self, product_id: int) -> dict[str, Any]:
        with self._lock:
            product = self.products.get(product_id)
            if product is None:
                raise product_not_found()
            return self.product_json(product)

    @property
    def webhooks(self) -> list[dict[str, Any]]:
        """Webhook state incl. ``failure_count`` and ``pending_delivery`` (never the secret)."""
        with self._lock:
            return [
                {
                    **self.webhook_json(w),
                    "failure_count": w.failure_count,
                    "pending_delivery": w.pending_delivery,
                }
                for w in self._webhooks.values()
            ]

    def get_webhook(self, webhook_id: int) -> dict[str, Any]:
        with self._lock:
            webhook = self._webhooks.get(webhook_id)
            if webhook is None:
                raise webhook_not_found()
            return self.webhook_json(webhook)

    def list_webhook_states(self) -> list[WebhookState]:
        with self._lock:
            return list(self._webhooks.values())

    @property
    def deliveries(self) -> list[DeliveryRecord]:
        return list(self._dispatcher.log)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued webhook delivery (and ping) was attempted."""
        return self._dispatcher.flush(timeout)

    # --- webhooks: firing and delivery callbacks ----------------------------------------------------

    def _fire(self, topic: str, resource_id: int) -> None:
        for webhook in self._webhooks.values():
            if webhook.topic == topic and webhook.status == "active":
                self._dispatcher.enqueue(webhook.id, topic, resource_id)

    def _webhook_for_delivery(self, webhook_id: int) -> WebhookState | None:
        with self._lock:
            return self._webhooks.get(webhook_id)

    def _payload(self, resource: str, event: str, resource_id: int) -> Any:
        if event == "deleted":
            return {"id": resource_id}
        with self._lock:
            # Built at send time; a resource gone by then yields WooCommerce's own 404 body.
            if resource == "order":
                order = self.orders.get(resource_id)
                return self.order_json(order) if order else order_not_found().envelope()
            if resource == "customer":
                customer = self.customers.get(resource_id)
                return self.customer_json(customer) if customer else customer_not_found().envelope()
            if resource == "product":
                product = self.products.get(resource_id)
                return self.product_json(product) if product else product_not_found().envelope()
        return {"id": resource_id}

    def _delivery_result(self, webhook_id: int, success: bool, is_ping: bool) -> None:
        with self._lock:
            webhook = self._webhooks.get(webhook_id)
            if webhook is None:
                return
            if is_ping:
                if success:
                    webhook.pending_delivery = False
            elif success:
                webhook.failure_count = 0
            elif webhook.failure_count > 5:
                webhook.status = "disabled"
            else:
                webhook.failure_count += 1
