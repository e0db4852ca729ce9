"""``FakeWooShop``: an in-memory WooCommerce shop served over real HTTP on loopback.

State and reads live in ``core.py``, mutations in ``mutations.py``, HTTP parsing in ``server.py``,
order generation in ``orders_gen.py``, webhook delivery in ``webhooks.py``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from .activity import ActivityStream
from .core import RequestRecord
from .mutations import ShopMutations


class FakeWooShop(ShopMutations):
    """A deterministic WooCommerce shop. ``start()`` serves ``url + /wp-json/wc/v3`` on loopback.

    Constructor: ``consumer_key``, ``consumer_secret``, ``seed``, ``currency``, ``site_url``,
    ``initial_orders`` (lazy history; 1,000,000 is fine), ``history_days``, ``site_timezone``,
    ``clock`` (returns an aware datetime), ``delivery_timeout``.
    """

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

    # --- lists (orders are in ShopCore.list_orders) ------------------------------------------------

    @staticmethod
    def _page(
        items: list[Any], key: Callable[[Any], Any], order: str, offset: int, limit: int
    ) -> tuple[int, list[Any]]:
        items.sort(key=key, reverse=order == "desc")
        return len(items), items[offset : offset + limit]

    def list_customers(
        self,
        *,
        email: str | None = None,
        role: str = "customer",
        include: Sequence[int] | None = None,
        orderby: str = "name",
        order: str = "asc",
        offset: int = 0,
        limit: int = 10,
    ) -> tuple[int, list[dict[str, Any]]]:
        """``GET /customers``: registered users only (guests never appear), default role=customer."""
        with self._lock:
            directory = self.customers
            if role not in ("all", "customer"):
                return 0, []
            if email:
                found = directory.find_email(email)
                ids = [found.id] if found is not None else []
            elif include is not None:
                ids = list(dict.fromkeys(include))
            else:
                ids = directory.by_name() if orderby == "name" else directory.ids()
            records = [r for r in (directory.get(i) for i in ids) if r is not None]
            if include is not None:
                records = [r for r in records if r.id in include]
            position = {customer_id: n for n, customer_id in enumerate(include or ())}
            keys: dict[str, Callable[[Any], Any]] = {
                "name": lambda r: (f"{r.data['first_name']} {r.data['last_name']}".lower(), r.id),
                "include": lambda r: position.get(r.id, 0),
                "registered_date": lambda r: (r.created_ts, r.id),
            }
            if orderby == "include":
                order = "asc"
            total, page = self._page(records, keys.get(orderby, lambda r: r.id), order, offset, limit)
            return total, [self.customer_json(r) for r in page]

    def list_products(
        self,
        *,
        status: str | None = None,
        type_: str | None = None,
        sku: str | None = None,
        include: Sequence[int] | None = None,
        after: int | None = None,
        before: int | None = None,
        modified_after: int | None = None,
        modified_before: int | None = None,
        orderby: str = "date",
        order: str = "desc",
        offset: int = 0,
        limit: int = 10,
    ) -> tuple[int, list[dict[str, Any]]]:
        """``GET /products``: variations are not listed (they have their own endpoint)."""
        with self._lock:
            found = [
                p
                for p in self.products.values()
                if p.data["type"] != "variation"
                and (status in (None, "any") or p.data["status"] == status)
                and (type_ is None or p.data["type"] == type_)
                and (sku is None or p.data["sku"] == sku)
                and (include is None or p.id in include)
                and (after is None or p.created_ts > after)
                and (before is None or p.created_ts < before)
                and (modified_after is None or p.modified_ts > modified_after)
                and (modified_before is None or p.modified_ts < modified_before)
            ]
            position = {product_id: n for n, product_id in enumerate(include or ())}
            keys: dict[str, Callable[[Any], Any]] = {
                "id": lambda p: p.id,
                "modified": lambda p: (p.modified_ts, p.id),
                "title": lambda p: (p.data["name"].lower(), p.id),
                "slug": lambda p: (p.data["slug"], p.id),
                "price": lambda p: (Decimal(p.data["price"] or 0), p.id),
                "include": lambda p: position.get(p.id, 0),
            }
            total, page = self._page(found, keys.get(orderby, lambda p: (p.created_ts, p.id)), order, offset, limit)
            return total, [self.product_json(p) for p in page]

    def list_webhooks(
        self,
        *,
        status: str = "all",
        include: Sequence[int] | None = None,
        orderby: str = "date",
        order: str = "desc",
        offset: int = 0,
        limit: int = 10,
    ) -> tuple[int, list[dict[str, Any]]]:
        with self._lock:
            found = [
                w
                for w in self._webhooks.values()
                if (status == "all" or w.status == status) and (include is None or w.id in include)
            ]
            keys: dict[str, Callable[[Any], Any]] = {
                "id": lambda w: w.id,
                "title": lambda w: (w.name.lower(), w.id),
            }
            total, page = self._page(found, keys.get(orderby, lambda w: (w.created_ts, w.id)), order, offset, limit)
            return total, [self.webhook_json(w) for w in page]

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
