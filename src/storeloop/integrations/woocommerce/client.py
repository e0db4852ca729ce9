"""WooCommerce REST v3 adapter: the ``WooCommercePort`` protocol and its httpx implementation.

Pure Python (no Django) so benchmarks and the demo can use it. Transient failures (429, 5xx,
timeouts, connection errors) are retried here with exponential back-off and full jitter, honouring
``Retry-After`` (capped at ``backoff_max``); terminal ones (401/403/404/other 4xx, bad payloads) are
raised at once. Non-idempotent POSTs are retried only when the shop surely did not act on them
(connect failures, 429, 503), so a retried create never makes two webhooks.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import httpx
import orjson

from .errors import (
    WooCommerceError,
    WooPayloadError,
    WooTransientError,
    error_from_response,
    parse_retry_after,
)
from .models import (
    WooCustomer,
    WooOrder,
    WooProduct,
    WooWebhook,
    parse_customer,
    parse_order,
    parse_product,
    parse_webhook,
)
from .port import OrderBy, Page, SortOrder, WooCommercePort

__all__ = [
    "API_PREFIX",
    "DEFAULT_TIMEOUT",
    "MAX_PER_PAGE",
    "OrderBy",
    "Page",
    "SortOrder",
    "WooCommerceClient",
    "WooCommercePort",
    "format_wc_datetime",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
API_PREFIX = "/wp-json/wc/v3"
MAX_PER_PAGE = 100  # WP REST rejects anything above with 400 rest_invalid_param
DEFAULT_TIMEOUT = httpx.Timeout(10, connect=5)
DEFAULT_USER_AGENT = "Storeloop/0.1 (woocommerce-client)"

AuthMode = Literal["basic", "query"]
_ORDER_ORDERBY = frozenset({"date", "id", "modified", "include"})
_PRODUCT_ORDERBY = frozenset({"date", "id", "modified", "include", "title", "slug", "price"})
_CUSTOMER_ORDERBY = frozenset({"id", "include", "name", "registered_date"})
_BOM = b"\xef\xbb\xbf"


class _RedactConsumerSecret(logging.Filter):
    """httpx logs every request URL at INFO; with query auth that URL carries the consumer secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(
                a.copy_remove_param("consumer_secret")
                if isinstance(a, httpx.URL) and "consumer_secret" in a.params
                else a
                for a in record.args
            )
        return True


def _install_log_redaction() -> None:
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactConsumerSecret) for f in httpx_logger.filters):
        httpx_logger.addFilter(_RedactConsumerSecret())


_install_log_redaction()


def format_wc_datetime(value: datetime) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SS`` for date filters (sent with ``dates_are_gmt=true``)."""
    if value.tzinfo is None:
        raise ValueError("WooCommerce date filters need an aware datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _check_paging(page: int, per_page: int) -> None:
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ValueError(f"per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}")
    if page < 1:
        raise ValueError(f"page must be >= 1, got {page}")


def _check_choice(name: str, value: str, allowed: frozenset[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")


def _header_int(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


class WooCommerceClient:
    """httpx implementation of :class:`WooCommercePort` for one shop.

    ``base_url`` is the site URL (``https://shop.example``); the API lives at
    ``base_url + /wp-json/wc/v3`` (a base_url that already ends there is accepted too).
    ``auth="basic"`` sends HTTP Basic (key as user, secret as password; WooCommerce honours it
    only over HTTPS); ``auth="query"`` sends ``consumer_key``/``consumer_secret`` query params for
    hosts that strip the Authorization header. One pooled ``httpx.Client`` is reused; call
    :meth:`close` or use the client as a context manager.
    """

    def __init__(
        self,
        base_url: str,
        consumer_key: str,
        consumer_secret: str,
        *,
        auth: AuthMode = "basic",
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if auth not in ("basic", "query"):
            raise ValueError(f"auth must be 'basic' or 'query', got {auth!r}")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        root = base_url.rstrip("/")
        self.api_url = root if root.endswith(API_PREFIX) else root + API_PREFIX
        self._auth_mode = auth
        self._auth_params: dict[str, str] = (
            {"consumer_key": consumer_key, "consumer_secret": consumer_secret} if auth == "query" else {}
        )
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._http = httpx.Client(
            base_url=self.api_url,
            auth=httpx.BasicAuth(consumer_key, consumer_secret) if auth == "basic" else None,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,  # a redirect usually means http->https; fix the URL instead
            headers={"User-Agent": user_agent, "Accept": "application/json"},
        )

    # --- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WooCommerceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never shows credentials
        return f"WooCommerceClient({self.api_url!r}, auth={self._auth_mode!r})"

    # --- transport ---------------------------------------------------------------------------------

    def _backoff_delay(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self._backoff_max, self._backoff_base * (2**attempt))
        delay = self._rng.uniform(0, ceiling)  # "full jitter"
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._backoff_max))
        return delay

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> httpx.Response:
        idempotent = method != "POST"
        query = {**(params or {}), **self._auth_params}
        content = orjson.dumps(json_body) if json_body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        attempt = 0
        while True:
            error: WooCommerceError
            try:
                response = self._http.request(method, path, params=query, content=content, headers=headers)
            except httpx.TimeoutException as exc:
                # Exception text may quote the URL (and with query auth the secret): keep the class only.
                error = WooTransientError(
                    f"WooCommerce request timed out ({type(exc).__name__}) on {method} {path}",
                    wc_code="timeout",
                )
                retryable = idempotent or isinstance(exc, httpx.ConnectTimeout)
            except httpx.TransportError as exc:
                error = WooTransientError(
                    f"WooCommerce connection failed ({type(exc).__name__}) on {method} {path}",
                    wc_code="connection_error",
                )
                retryable = idempotent or isinstance(exc, httpx.ConnectError)
            else:
                status = response.status_code
                logger.debug("woocommerce %s %s -> %s (attempt %s)", method, path, status, attempt + 1)
                if 200 <= status < 300:
                    return response
                error = error_from_response(
                    status,
                    self._decode(response, method, path, strict=False),
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                )
                if not isinstance(error, WooTransientError):
                    raise error
                retryable = idempotent or status in (429, 503)
            assert isinstance(error, WooTransientError)
            if not retryable or attempt >= self._max_retries:
                raise error
            delay = self._backoff_delay(attempt, error.retry_after)
            logger.warning(
                "woocommerce %s %s failed transiently (status=%s code=%s); retry %s/%s in %.2fs",
                method,
                path,
                error.status,
                error.wc_code,
                attempt + 1,
                self._max_retries,
                delay,
            )
            self._sleep(delay)
            attempt += 1

    @staticmethod
    def _decode(response: httpx.Response, method: str, path: str, *, strict: bool = True) -> Any:
        body = response.content
        # Some themes/plugins emit a UTF-8 BOM before WordPress output; json parsers reject it.
        if body.startswith(_BOM):
            body = body[len(_BOM) :]
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            if not strict:
                return None
            raise WooPayloadError(
                f"WooCommerce answered {method} {path} with a non-JSON body "
                f"(content-type {response.headers.get('content-type', 'unknown')})",
                status=response.status_code,
            ) from None

    def _get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._decode(self._request("GET", path, params=params), "GET", path)

    def _send_json(self, method: str, path: str, body: Any, params: Mapping[str, Any] | None = None) -> Any:
        return self._decode(self._request(method, path, params=params, json_body=body), method, path)

    def _list_page(
        self,
        path: str,
        params: dict[str, Any],
        parse: Callable[[Any], T],
        page: int,
        per_page: int,
    ) -> Page[T]:
        response = self._request("GET", path, params={**params, "page": page, "per_page": per_page})
        data = self._decode(response, "GET", path)
        if not isinstance(data, list):
            raise WooPayloadError(f"WooCommerce answered GET {path} with a non-array body")
        items = [parse(item) for item in data]
        links = response.links
        total_pages = _header_int(response, "X-WP-TotalPages")
        total = _header_int(response, "X-WP-Total")
        has_next = "next" in links or (total_pages is not None and page < total_pages)
        if total_pages is None:  # headers stripped by a proxy: best lower bounds
            total_pages = page + 1 if has_next else page
        if total is None:
            total = (page - 1) * per_page + len(items)
        return Page(
            items=items,
            page=page,
            per_page=per_page,
            total=total,
            total_pages=total_pages,
            has_next=has_next and bool(items),
        )

    @staticmethod
    def _iter_pages(fetch: Callable[[int], Page[T]]) -> Iterator[T]:
        page = 1
        while True:
            result = fetch(page)
            yield from result.items
            if not result.has_next:
                return
            page += 1

    # --- orders ------------------------------------------------------------------------------------

    def check_credentials(self) -> None:
        """Raise ``WooAuthError`` (or another WooCommerceError) unless the keys can read orders."""
        self._get_json("/orders", {"per_page": 1, "_fields": "id"})

    @staticmethod
    def _order_params(
        *,
        modified_after: datetime | None,
        modified_before: datetime | None,
        orderby: str,
        order: str,
        status: str | Sequence[str] | None,
        include: Sequence[int] | None,
    ) -> dict[str, Any]:
        _check_choice("orderby", orderby, _ORDER_ORDERBY)
        _check_choice("order", order, frozenset({"asc", "desc"}))
        params: dict[str, Any] = {"orderby": orderby, "order": order}
        if modified_after is not None:
            params["modified_after"] = format_wc_datetime(modified_after)
        if modified_before is not None:
            params["modified_before"] = format_wc_datetime(modified_before)
        if modified_after is not None or modified_before is not None:
            # Without it WooCommerce reads zone-less dates in the *site* timezone.
            params["dates_are_gmt"] = "true"
        if status:
            params["status"] = status if isinstance(status, str) else ",".join(status)
        if include:
            params["include"] = ",".join(str(int(i)) for i in include)
        return params

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
    ) -> Page[WooOrder]:
        """One page of ``GET /orders``. ``modified_after``/``before`` are exclusive, second precision."""
        return self.list_orders_page_as(
            parse_order,
            page,
            per_page,
            modified_after=modified_after,
            modified_before=modified_before,
            orderby=orderby,
            order=order,
            status=status,
            include=include,
        )

    def list_orders_page_as(
        self,
        parse: Callable[[Any], T],
        page: int = 1,
        per_page: int = 100,
        *,
        modified_after: datetime | None = None,
        modified_before: datetime | None = None,
        orderby: OrderBy = "modified",
        order: SortOrder = "asc",
        status: str | Sequence[str] | None = None,
        include: Sequence[int] | None = None,
    ) -> Page[T]:
        """``list_orders_page`` with each order's JSON object handed to ``parse`` instead of
        ``parse_order`` (the backfill turns it straight into database rows)."""
        _check_paging(page, per_page)
        params = self._order_params(
            modified_after=modified_after,
            modified_before=modified_before,
            orderby=orderby,
            order=order,
            status=status,
            include=include,
        )
        return self._list_page("/orders", params, parse, page, per_page)

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
    ) -> Iterator[WooOrder]:
        """All matching orders, page by page (``X-WP-TotalPages`` / ``Link: rel="next"``).

        Offset paging over live data can skip or repeat an order modified mid-scan; a backfill
        should page by ``modified_after`` windows (orderby=modified, asc) and dedupe by id.
        """
        _check_paging(1, per_page)
        params = self._order_params(
            modified_after=modified_after,
            modified_before=modified_before,
            orderby=orderby,
            order=order,
            status=status,
            include=include,
        )
        return self._iter_pages(lambda page: self._list_page("/orders", params, parse_order, page, per_page))

    def get_order(self, order_id: int) -> WooOrder:
        return parse_order(self._get_json(f"/orders/{int(order_id)}"))

    def update_order(self, order_id: int, **fields: Any) -> WooOrder:
        """``PUT /orders/{id}`` with a partial body, e.g. ``status="on-hold"``; returns the full order."""
        return parse_order(self._send_json("PUT", f"/orders/{int(order_id)}", fields))

    # --- customers and products --------------------------------------------------------------------

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
    ) -> Page[WooCustomer]:
        """One page of ``GET /customers`` (registered users only; WooCommerce defaults role=customer)."""
        _check_paging(page, per_page)
        _check_choice("orderby", orderby, _CUSTOMER_ORDERBY)
        params: dict[str, Any] = {"orderby": orderby, "order": order}
        if email:
            params["email"] = email
        if role:
            params["role"] = role
        if include:
            params["include"] = ",".join(str(int(i)) for i in include)
        return self._list_page("/customers", params, parse_customer, page, per_page)

    def get_customer(self, customer_id: int) -> WooCustomer:
        return parse_customer(self._get_json(f"/customers/{int(customer_id)}"))

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
    ) -> Page[WooProduct]:
        _check_paging(page, per_page)
        _check_choice("orderby", orderby, _PRODUCT_ORDERBY)
        params: dict[str, Any] = {"orderby": orderby, "order": order}
        if modified_after is not None:
            params["modified_after"] = format_wc_datetime(modified_after)
        if modified_before is not None:
            params["modified_before"] = format_wc_datetime(modified_before)
        if modified_after is not None or modified_before is not None:
            params["dates_are_gmt"] = "true"
        if status:
            params["status"] = status
        if sku:
            params["sku"] = sku
        if include:
            params["include"] = ",".join(str(int(i)) for i in include)
        return self._list_page("/products", params, parse_product, page, per_page)

    def get_product(self, product_id: int) -> WooProduct:
        return parse_product(self._get_json(f"/products/{int(product_id)}"))

    # --- webhooks ----------------------------------------------------------------------------------

    def list_webhooks(self, *, status: str | None = None) -> list[WooWebhook]:
        params: dict[str, Any] = {"orderby": "id", "order": "asc"}
        if status:
            params["status"] = status
        return list(self._iter_pages(lambda page: self._list_page("/webhooks", params, parse_webhook, page, 100)))

    def create_webhook(
        self, *, name: str, topic: str, delivery_url: str, secret: str, status: str = "active"
    ) -> WooWebhook:
        """Register a webhook (201). WooCommerce pings ``delivery_url`` with an unsigned form body."""
        if not secret:
            # Without one WooCommerce derives a secret from the user's hash we can never verify.
            raise ValueError("a webhook secret is required")
        body = {
            "name": name,
            "topic": topic,
            "delivery_url": delivery_url,
            "secret": secret,
            "status": status,
        }
        return parse_webhook(self._send_json("POST", "/webhooks", body))

    def update_webhook(self, webhook_id: int, **fields: Any) -> WooWebhook:
        """E.g. ``update_webhook(id, status="active")`` re-enables a webhook WooCommerce disabled."""
        return parse_webhook(self._send_json("PUT", f"/webhooks/{int(webhook_id)}", fields))

    def delete_webhook(self, webhook_id: int) -> None:
        # Webhooks cannot be trashed; WooCommerce answers 501 without force=true.
        self._request("DELETE", f"/webhooks/{int(webhook_id)}", params={"force": "true"})
