"""``FakeWooShop``: an in-memory WooCommerce shop served over real HTTP on loopback.

State lives here (thread-safe behind one lock); HTTP parsing lives in ``server.py``, order
generation in ``orders_gen.py``, webhook delivery in ``webhooks.py``. Mutations bump
``date_modified`` and fire the same webhooks whether they come from Python or from REST.
"""

from __future__ import annotations

import itertools
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..client import API_PREFIX
from .activity import ActivityStream
from .catalogue import Product, Sellable, build_catalogue
from .customers import CustomerDirectory, CustomerRecord
from .orders_gen import (
    CUSTOMER_BASE_ID,
    ORDER_STATUSES,
    PAYMENT_TITLES,
    History,
    OrderBuilder,
    OrderRecord,
    PeopleBook,
    refresh_flags,
)
from .people import Person, make_person
from .store import OrderQuery, OrderStore
from .util import money, php_json, q2, set_date
from .webhooks import TOPIC_HOOKS, WEBHOOK_STATUSES, DeliveryRecord, Dispatcher, Faults, WebhookState, valid_topic

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


class FakeWooShop:
    """A deterministic WooCommerce shop. ``start()`` serves ``url + /wp-json/wc/v3`` on loopback."""

    def __init__(
        self,
        *,
        consumer_key: str = "ck_test",
        consumer_secret: str = "cs_test",
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
        self._lock = threading.RLock()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.tz = _site_tz(site_timezone)
        self._site_url = site_url.rstrip("/") if site_url else None
        anchor = int(self._clock().timestamp()) // 60 * 60
        start = anchor - history_days * 86400
        products, self.sellables = build_catalogue(random.Random(seed * 31 + 5), start - 90 * 86400, self.tz)
        self.products: dict[int, Product] = {p.id: p for p in products}
        people = PeopleBook(
            seed, registered=min(max(initial_orders // 5, 25), 20_000), guests=min(max(initial_orders // 3, 40), 50_000)
        )
        self._people = people
        self._builder = OrderBuilder(tz=self.tz, currency=currency, sellables=self.sellables)
        history = History(
            seed=seed, n=initial_orders, start_ts=start, end_ts=anchor - 60, base_id=FIRST_ORDER_ID,
            people=people, builder=self._builder,
        )  # fmt: skip
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
        )
        self._server: Any = None
        self._activity: ActivityStream | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeWooShop:
        from .server import FakeServer  # local import: server depends on this module

        if self._server is None:
            self._dispatcher.start()
            self._server = FakeServer(self, host, port)
            self._server.start()
        return self

    def stop(self) -> None:
        self.stop_activity()
        if self._server is not None:
            self._server.stop()
            self._server = None
        self._dispatcher.stop()

    def __enter__(self) -> FakeWooShop:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

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
        return self._site_url or self.url

    def now(self) -> int:
        return int(self._clock().timestamp())

    # --- requests and faults (used by the server) ---------------------------------------------------

    def log_request(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._requests.append(RequestRecord(method, path, status))

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def roll_fault(self) -> int | None:
        """The status a faulty REST request should get now, or None for a normal answer."""
        faults = self.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        with self._lock:
            if faults.fail_next > 0:
                faults.fail_next -= 1
                return faults.fail_next_status
            if faults.rate_limit_rate and self._fault_rng.random() < faults.rate_limit_rate:
                return 429
            if faults.error_rate and self._fault_rng.random() < faults.error_rate:
                return self._fault_rng.choice((500, 502, 503))
        return None

    # --- serialisation -----------------------------------------------------------------------------

    def _links(self, collection: str, resource_id: int) -> dict[str, Any]:
        api = self.site_url + API_PREFIX
        return {"self": [{"href": f"{api}/{collection}/{resource_id}"}], "collection": [{"href": f"{api}/{collection}"}]}

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
            "id": w.id, "name": w.name, "status": w.status, "topic": w.topic, "resource": resource,
            "event": event, "hooks": TOPIC_HOOKS.get(w.topic, []), "delivery_url": w.delivery_url,
        }  # fmt: skip
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
                {**self.webhook_json(w), "failure_count": w.failure_count, "pending_delivery": w.pending_delivery}
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

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "orders": self.orders.count(),
                "history_orders": self.orders.history.n,
                "changed_orders": len(self.orders.records),
                "customers": len(self.customers.ids()),
                "products": len(self.products),
                "webhooks": self.webhooks,
                "deliveries": len(self._dispatcher.log),
                "requests": len(self._requests),
                "faults": self.faults.as_dict(),
                "activity": self._activity is not None,
            }

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

    def create_webhook(
        self, *, topic: str, delivery_url: str, secret: str = "", name: str = "", status: str = "active"
    ) -> dict[str, Any]:
        """As ``POST /webhooks``: 201 body; an active webhook is pinged (asynchronously)."""
        topic = (topic or "").strip().lower()
        if not valid_topic(topic):
            raise ShopError(400, "woocommerce_rest_shop_webhook_invalid_topic",
                            "Webhook topic is required and must be valid.")  # fmt: skip
        if not (delivery_url or "").startswith(("http://", "https://")):
            raise ShopError(400, "woocommerce_rest_shop_webhook_invalid_delivery_url",
                            "Webhook delivery URL must be a valid URL starting with http:// or https://.")  # fmt: skip
        if status not in WEBHOOK_STATUSES:
            raise ShopError(400, "rest_invalid_param", "Invalid parameter(s): status",
                            {"status": "status is not one of active, paused, and disabled."})  # fmt: skip
        with self._lock:
            now = self.now()
            webhook = WebhookState(
                id=next(self._webhook_ids),
                name=name or f"Webhook created on {datetime.fromtimestamp(now, self.tz):%b %d, %Y @ %I:%M %p}",
                status=status, topic=topic, delivery_url=delivery_url,
                secret=secret or secrets.token_hex(25), created_ts=now, modified_ts=now,
            )  # fmt: skip
            self._webhooks[webhook.id] = webhook
            if status == "active":
                self._dispatcher.enqueue_ping(webhook.id)
            return self.webhook_json(webhook)

    def update_webhook(self, webhook_id: int, **fields: Any) -> dict[str, Any]:
        with self._lock:
            webhook = self._webhooks.get(webhook_id)
            if webhook is None:
                raise webhook_not_found()
            status = fields.get("status")
            if status is not None and status not in WEBHOOK_STATUSES:
                raise ShopError(400, "rest_invalid_param", "Invalid parameter(s): status",
                                {"status": "status is not one of active, paused, and disabled."})  # fmt: skip
            topic = fields.get("topic")
            if topic is not None and not valid_topic(str(topic).lower()):
                raise ShopError(400, "woocommerce_rest_shop_webhook_invalid_topic",
                                "Webhook topic is required and must be valid.")  # fmt: skip
            if "name" in fields:
                webhook.name = str(fields["name"])
            if topic is not None:
                webhook.topic = str(topic).lower()
            if "delivery_url" in fields:
                webhook.delivery_url = str(fields["delivery_url"])
            if fields.get("secret"):
                webhook.secret = str(fields["secret"])
            if status is not None:
                # Like WooCommerce, re-activating keeps failure_count: one more failure disables it
                # again, one success resets it.
                if status == "active" and webhook.status != "active" and webhook.pending_delivery:
                    self._dispatcher.enqueue_ping(webhook.id)
                webhook.status = status
            webhook.modified_ts = self.now()
            return self.webhook_json(webhook)

    def delete_webhook(self, webhook_id: int) -> dict[str, Any]:
        with self._lock:
            webhook = self._webhooks.pop(webhook_id, None)
            if webhook is None:
                raise webhook_not_found()
            return self.webhook_json(webhook)

    # --- order mutations ---------------------------------------------------------------------------

    def _sellable(self, spec: dict[str, Any]) -> Sellable:
        product_id = int(spec.get("product_id") or 0)
        variation_id = int(spec.get("variation_id") or 0)
        for s in self.sellables:
            if s.product_id == product_id and (variation_id in (0, s.variation_id)):
                return s
        raise ShopError(400, "woocommerce_rest_invalid_product_id", "Product ID provided is not associated with any product.")

    def _person_for(self, customer_id: int) -> Person:
        record = self.customers.get(customer_id)
        if record is None:
            raise ShopError(400, "woocommerce_rest_invalid_customer_id", "Customer ID is invalid.")
        b = record.data["billing"]
        return Person(
            first_name=record.data["first_name"], last_name=record.data["last_name"], email=record.data["email"],
            country=b.get("country") or "DE", city=b.get("city", ""), state=b.get("state", ""),
            postcode=b.get("postcode", ""), address_1=b.get("address_1", ""), address_2=b.get("address_2", ""),
            company=b.get("company", ""), phones=(b.get("phone", ""),),
        )  # fmt: skip

    def create_order(self, **overrides: Any) -> dict[str, Any]:
        """A new checkout (random person, items and payment unless given); fires ``order.created``.

        Overrides: status, customer_id, billing, shipping, payment_method, payment_method_title,
        line_items ([{product_id, variation_id?, quantity}]), customer_note, meta_data, set_paid, coupon.
        """
        with self._lock:
            rng = self._rng
            if "customer_id" in overrides:
                customer_id = int(overrides["customer_id"] or 0)
                person = self._person_for(customer_id) if customer_id else make_person(rng, self._next_order_id)
            elif rng.random() < 0.55:
                customer_id = rng.choice(self.customers.ids()[:50] or [0])
                person = self._person_for(customer_id) if customer_id else make_person(rng, self._next_order_id)
            else:
                customer_id = 0
                person = self._people.guest(rng.randrange(self._people.guest_count))
            method = overrides.get("payment_method") or rng.choices(
                ("cod", "stripe", "paypal", "bacs"), weights=(20, 45, 20, 15)
            )[0]
            default_status = "on-hold" if method == "bacs" else "processing"
            status = overrides.get("status") or default_status
            if status not in ORDER_STATUSES or status == "trash":
                raise ShopError(400, "rest_invalid_param", "Invalid parameter(s): status", {"status": "status is not valid."})
            if overrides.get("line_items"):
                items = [(self._sellable(li), max(1, int(li.get("quantity") or 1))) for li in overrides["line_items"]]
            else:
                items = self._builder.pick_items(rng)
            now = self.now()
            order_id = self._next_order_id
            self._next_order_id += 1
            record = self._builder.build(
                order_id=order_id, rng=rng, person=person, customer_id=customer_id, status=status,
                payment_method=method, created_ts=now, modified_ts=now, items=items, item_ids=self._item_ids,
                coupon=bool(overrides.get("coupon", False)), customer_note=str(overrides.get("customer_note", "")),
            )  # fmt: skip
            self._apply_fields(record, {k: v for k, v in overrides.items() if k in _EDITABLE and k != "status"})
            if overrides.get("set_paid"):
                self._mark_paid(record, now)
            self.orders.add(record)
            self.recent_order_ids.append(order_id)
            self._fire("order.created", order_id)
            return self.order_json(record)

    def _mark_paid(self, record: OrderRecord, now: int) -> None:
        if record.data["date_paid_gmt"] is None:
            set_date(record.data, "date_paid", now, self.tz)
        if record.status in ("pending", "on-hold", "failed"):
            record.data["status"] = "processing"

    def _apply_fields(self, record: OrderRecord, fields: dict[str, Any]) -> None:
        data = record.data
        for key, value in fields.items():
            if key in ("billing", "shipping"):
                if not isinstance(value, dict):
                    raise ShopError(400, "rest_invalid_param", f"Invalid parameter(s): {key}", {key: f"{key} is not of type object."})
                data[key] = {**data[key], **{k: str(v) for k, v in value.items() if k in data[key]}}
            elif key == "meta_data":
                if not isinstance(value, list):
                    raise ShopError(400, "rest_invalid_param", "Invalid parameter(s): meta_data", {"meta_data": "meta_data is not of type array."})
                for entry in value:
                    existing = next((m for m in data["meta_data"] if m["key"] == entry.get("key")), None)
                    if existing is not None:
                        existing["value"] = entry.get("value")
                    else:
                        data["meta_data"].append({"id": next(self._item_ids), "key": entry.get("key"), "value": entry.get("value")})
            elif key == "payment_method":
                data["payment_method"] = str(value)
                data["payment_method_title"] = PAYMENT_TITLES.get(str(value), str(value))
            elif key == "customer_id":
                data["customer_id"] = int(value or 0)
            elif key in ("customer_note", "payment_method_title", "transaction_id"):
                data[key] = str(value)
            elif key == "status":
                self._apply_status(record, str(value))
            elif key == "set_paid":
                if value:
                    self._mark_paid(record, self.now())

    def _apply_status(self, record: OrderRecord, status: str) -> None:
        if status not in ORDER_STATUSES or status == "trash":
            raise ShopError(400, "rest_invalid_param", "Invalid parameter(s): status", {"status": "status is not valid."})
        now = self.now()
        data = record.data
        old = data["status"]
        data["status"] = status
        paid_now = status == "completed" or (status == "processing" and data["payment_method"] != "cod")
        if paid_now and data["date_paid_gmt"] is None:
            set_date(data, "date_paid", now, self.tz)
        if status == "completed" and old != "completed":
            set_date(data, "date_completed", now, self.tz)
        if status == "refunded" and old != "refunded":
            # WooCommerce refunds the remainder when an order is set to refunded by hand.
            remaining = Decimal(data["total"]) - self._refunded(data)
            if remaining > 0:
                data["refunds"].insert(0, {"id": next(self._refund_ids), "reason": "Order fully refunded.", "total": "-" + money(remaining)})

    @staticmethod
    def _refunded(data: dict[str, Any]) -> Decimal:
        return sum((-Decimal(r["total"]) for r in data["refunds"]), Decimal(0))

    def _touch(self, record: OrderRecord) -> None:
        record.modified_ts = self.now()
        set_date(record.data, "date_modified", record.modified_ts, self.tz)
        refresh_flags(record.data)

    def _changeable(self, order_id: int) -> OrderRecord:
        record = self.orders.materialise(order_id)
        if record is None:
            raise order_not_found()
        return record

    def update_order(self, order_id: int, **fields: Any) -> dict[str, Any]:
        """As ``PUT /orders/{id}``: partial update, bumps date_modified, fires ``order.updated``."""
        with self._lock:
            record = self._changeable(order_id)
            self._apply_fields(record, {k: v for k, v in fields.items() if k in _EDITABLE})
            self._touch(record)
            self._fire("order.updated", order_id)
            return self.order_json(record)

    def set_status(self, order_id: int, status: str) -> dict[str, Any]:
        return self.update_order(order_id, status=status)

    def refund_order(self, order_id: int, amount: Decimal | str, reason: str = "") -> dict[str, Any]:
        """Add a refund (shown as a negative total); a full refund sets status ``refunded``."""
        with self._lock:
            record = self._changeable(order_id)
            value = q2(Decimal(amount))
            remaining = Decimal(record.data["total"]) - self._refunded(record.data)
            if value <= 0 or value > remaining:
                raise ShopError(500, "woocommerce_rest_cannot_create_order_refund", "Invalid refund amount.")
            record.data["refunds"].insert(0, {"id": next(self._refund_ids), "reason": reason, "total": "-" + money(value)})
            if value == remaining:
                record.data["status"] = "refunded"
            self._touch(record)
            self._fire("order.updated", order_id)
            return self.order_json(record)

    def delete_order(self, order_id: int, *, force: bool = False) -> dict[str, Any]:
        """Trash (fires ``order.deleted`` with ``{"id": N}``) or, with ``force``, delete for good.

        Like WooCommerce, a permanent delete fires no webhook: only trashing does.
        """
        with self._lock:
            record = self._changeable(order_id)
            if force:
                body = self.order_json(record)
                self.orders.remove(order_id)
                return body
            if record.status == "trash":
                raise ShopError(410, "woocommerce_rest_already_trashed", "The order has already been deleted.")
            record.prev_status = record.status
            record.data["status"] = "trash"
            self._touch(record)
            self._fire("order.deleted", order_id)
            return self.order_json(record)

    def restore_order(self, order_id: int) -> dict[str, Any]:
        """Untrash to the previous status; fires ``order.restored``."""
        with self._lock:
            record = self._changeable(order_id)
            if record.status != "trash":
                raise ShopError(400, "woocommerce_rest_not_trashed", "The order is not in the trash.")
            record.data["status"] = record.prev_status or "pending"
            record.prev_status = None
            self._touch(record)
            self._fire("order.restored", order_id)
            return self.order_json(record)

    # --- customers and products --------------------------------------------------------------------

    def create_customer(self, *, email: str, **fields: Any) -> dict[str, Any]:
        """Register a customer (unique email); fires ``customer.created``."""
        with self._lock:
            if not email or "@" not in email:
                raise ShopError(400, "registration-error-invalid-email", "Please provide a valid email address.")
            if self.customers.find_email(email) is not None:
                raise ShopError(400, "registration-error-email-exists",
                                "An account is already registered with your email address.")  # fmt: skip
            customer_id = self.customers.next_id
            self.customers.next_id += 1
            now = self.now()
            person = make_person(self._rng, customer_id)
            record = self.customers.build(person, customer_id, now, now)
            record.data["email"] = email.strip()
            record.data["billing"]["email"] = email.strip()
            record.data["username"] = fields.pop("username", None) or email.split("@")[0].lower()
            self._apply_customer_fields(record, fields)
            self.customers.add(record)
            self._fire("customer.created", customer_id)
            return self.customer_json(record)

    def _apply_customer_fields(self, record: CustomerRecord, fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            if key in ("billing", "shipping") and isinstance(value, dict):
                record.data[key] = {**record.data[key], **{k: str(v) for k, v in value.items() if k in record.data[key]}}
            elif key in ("first_name", "last_name", "email"):
                record.data[key] = str(value)
            elif key == "meta_data" and isinstance(value, list):
                record.data["meta_data"].extend(value)

    def update_customer(self, customer_id: int, **fields: Any) -> dict[str, Any]:
        with self._lock:
            record = self.customers.materialise(customer_id)
            if record is None:
                raise customer_not_found()
            self._apply_customer_fields(record, fields)
            record.modified_ts = self.now()
            set_date(record.data, "date_modified", record.modified_ts, self.tz)
            self._fire("customer.updated", customer_id)
            return self.customer_json(record)

    def update_product(self, product_id: int, **fields: Any) -> dict[str, Any]:
        with self._lock:
            product = self.products.get(product_id)
            if product is None:
                raise product_not_found()
            for key in ("name", "sku", "status", "regular_price", "sale_price", "description"):
                if key in fields:
                    product.data[key] = str(fields[key])
            if "regular_price" in fields or "sale_price" in fields:
                product.data["price"] = product.data["sale_price"] or product.data["regular_price"]
            product.modified_ts = self.now()
            set_date(product.data, "date_modified", product.modified_ts, self.tz)
            self._fire("product.updated", product_id)
            return self.product_json(product)

    # --- activity ----------------------------------------------------------------------------------

    def start_activity(
        self, orders_per_minute: float = 6.0, status_change_ratio: float = 0.3, refund_ratio: float = 0.05
    ) -> None:
        """Background checkouts, status changes and refunds (seeded; timing is wall-clock)."""
        self.stop_activity()
        self._activity = ActivityStream(
            self, random.Random(self.seed * 7 + 4), orders_per_minute, status_change_ratio, refund_ratio
        )
        self._activity.start()

    def stop_activity(self) -> None:
        if self._activity is not None:
            self._activity.stop()
            self._activity = None


_EDITABLE = frozenset(
    {"status", "customer_id", "billing", "shipping", "payment_method", "payment_method_title", "customer_note",
     "meta_data", "transaction_id", "set_paid"}
)  # fmt: skip
CUSTOMER_FIRST_ID = CUSTOMER_BASE_ID
