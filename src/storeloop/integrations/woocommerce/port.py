"""The port Storeloop codes against: ``WooCommercePort`` and the ``Page`` it returns.

``WooCommerceClient`` (client.py) implements it over HTTP; tests and the demo point that client at
``FakeWooShop``. Every method raises the errors in ``errors.py`` (transient vs terminal).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

from .models import WooCustomer, WooOrder, WooProduct, WooWebhook

T = TypeVar("T")
OrderBy = Literal["date", "id", "modified", "include"]
SortOrder = Literal["asc", "desc"]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list endpoint. ``total``/``total_pages`` come from ``X-WP-Total(Pages)``."""

    items: list[T]
    page: int
    per_page: int
    total: int
    total_pages: int
    has_next: bool


class WooCommercePort(Protocol):
    """What Storeloop needs from a WooCommerce shop. Errors: ``storeloop...woocommerce.errors``."""

    def check_credentials(self) -> None: ...

    def list_orders_page(
        self,
        page: int = 1,
        per_page: int = 100,
        *,
        modified_after: datetime | None = None,
        modified_before: datetime | None = None,
        orderby: OrderBy = "modified",
        order: SortOrder = "asc",
        status: str | Sequence[str] | None = None,
        include: Sequence[int] | None = None,
    ) -> Page[WooOrder]: ...

    def iter_orders(
        self,
        *,
        per_page: int = 100,
        modified_after: datetime | None = None,
        modified_before: datetime | None = None,
        orderby: OrderBy = "modified",
        order: SortOrder = "asc",
        status: str | Sequence[str] | None = None,
        include: Sequence[int] | None = None,
    ) -> Iterator[WooOrder]: ...

    def get_order(self, order_id: int) -> WooOrder: ...

    def update_order(self, order_id: int, **fields: Any) -> WooOrder: ...

    def list_customers_page(
        self,
        page: int = 1,
        per_page: int = 100,
        *,
        email: str | None = None,
        role: str | None = None,
        orderby: str = "id",
        order: SortOrder = "asc",
        include: Sequence[int] | None = None,
    ) -> Page[WooCustomer]: ...

    def get_customer(self, customer_id: int) -> WooCustomer: ...

    def list_products_page(
        self,
        page: int = 1,
        per_page: int = 100,
        *,
        modified_after: datetime | None = None,
        modified_before: datetime | None = None,
        orderby: str = "id",
        order: SortOrder = "asc",
        status: str | None = None,
        sku: str | None = None,
        include: Sequence[int] | None = None,
    ) -> Page[WooProduct]: ...

    def get_product(self, product_id: int) -> WooProduct: ...

    def list_webhooks(self, *, status: str | None = None) -> list[WooWebhook]: ...

    def create_webhook(
        self, *, name: str, topic: str, delivery_url: str, secret: str, status: str = "active"
    ) -> WooWebhook: ...

    def update_webhook(self, webhook_id: int, **fields: Any) -> WooWebhook: ...

    def delete_webhook(self, webhook_id: int) -> None: ...

    def close(self) -> None: ...
