"""HTTP front of the fake shop: WooCommerce REST v3 routes, auth, paging headers, faults, control API.

A stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive (every response has a
Content-Length), one thread per connection. Control endpoints under ``/__fake__/`` are
unauthenticated: they exist only in the fake.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from storeloop.integrations.fakehttp import ServerThread, TrackedHandler, TrackingHTTPServer

from ..client import API_PREFIX
from .core import ShopError
from .orders_gen import ORDER_STATUSES
from .params import QueryParams, cannot_error, invalid_param
from .store import OrderQuery
from .util import RawJson, php_json

if TYPE_CHECKING:
    from .shop import FakeWooShop

Reply = tuple[int, Any, list[tuple[str, str]]]  # status, JSON payload, extra headers
Params = list[tuple[str, str]]

_FATAL = {
    "code": "internal_server_error",
    "message": "<p>There has been a critical error on this website.</p>",
    "data": {"status": 500},
    "additional_errors": [],
}
_PROXY_PAGE = (
    "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center><hr><center>nginx</center></body></html>"
)
_REASONS = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable"}


class _Handler(TrackedHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "Apache"
    sys_version = ""
    timeout = 120  # idle keep-alive connections eventually let their thread go
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # --- plumbing ----------------------------------------------------------------------------------

    @property
    def shop(self) -> FakeWooShop:
        return self.server.shop

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]], content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> None:
        body = payload if isinstance(payload, RawJson) else php_json(payload)
        self._send(status, body, headers or [], "application/json; charset=UTF-8")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if parts.path.startswith("/__fake__/"):
            self._control(method, parts.path[len("/__fake__") :], raw_body)
        elif parts.path == API_PREFIX or parts.path.startswith(API_PREFIX + "/"):
            self._rest(method, parts.path[len(API_PREFIX) :].rstrip("/") or "/", pairs, raw_body)
        else:
            self._send(404, b"<html><body>Not Found</body></html>", [], "text/html; charset=UTF-8")

    # --- REST --------------------------------------------------------------------------------------

    def _rest(self, method: str, route: str, pairs: Params, raw_body: bytes) -> None:
        shop = self.shop
        fault = shop.roll_fault()
        if fault is not None:
            shop.log_request(method, route, fault)  # before sending: the client may be gone by then
            self._fault(fault)
            return
        query = QueryParams(pairs, shop.tz)
        status: int
        headers: list[tuple[str, str]] = []
        try:
            auth_error = self._auth(query, method, route)
            if auth_error is not None:
                raise auth_error
            body = self._json_body(raw_body) if method in ("POST", "PUT", "PATCH") else {}
            status, payload, headers = self._route(method, route, query, body)
        except ShopError as error:
            status, payload = error.status, error.envelope()
            if status == 401:
                headers = [("WWW-Authenticate", 'Basic realm="WooCommerce REST API"')]
        shop.log_request(method, route, status)
        self._send_json(status, payload, headers)

    def _fault(self, status: int) -> None:
        if status == 429:
            payload = {
                "code": "rest_too_many_requests",
                "message": "Too many requests.",
                "data": {"status": 429},
            }
            self._send_json(429, payload, [("Retry-After", "1")])
        elif status == 500:
            self._send_json(500, _FATAL)
        elif status in _REASONS:
            self._send(status, _PROXY_PAGE.format(_REASONS[status]).encode(), [], "text/html")
        else:
            self._send_json(
                status,
                {"code": "fake_injected_fault", "message": "Injected fault.", "data": {"status": status}},
            )

    def _auth(self, query: QueryParams, method: str, route: str) -> ShopError | None:
        shop = self.shop
        # WooCommerce reads consumer_key/consumer_secret query params first, then the Basic header.
        key, secret = query.first("consumer_key"), query.first("consumer_secret")
        if not (key and secret):
            key = secret = None
            header = self.headers.get("Authorization") or ""
            if header[:6].lower() == "basic ":
                try:
                    user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    user = password = ""
                if user and password:
                    key, secret = user, password
        if not key or not secret:
            return cannot_error(method, collection=route.count("/") == 1)
        if not hmac.compare_digest(key.encode(), shop.consumer_key.encode()):
            return ShopError(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        if not hmac.compare_digest(secret.encode(), shop.consumer_secret.encode()):
            return ShopError(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")
        return None

    @staticmethod
    def _json_body(raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise ShopError(400, "rest_invalid_json", "Invalid JSON body passed.") from None
        if not isinstance(body, dict):
            raise ShopError(400, "rest_invalid_json", "Invalid JSON body passed.")
        return body

    def _route(self, method: str, route: str, query: QueryParams, body: dict[str, Any]) -> Reply:
        for pattern, methods in _ROUTES:
            match = pattern.fullmatch(route)
            if match is None:
                continue
            handler = methods.get(
                "PUT" if method in ("POST", "PATCH") and "PUT" in methods and "POST" not in methods else method
            )
            if handler is None:
                break
            return handler(self, match, query, body)
        raise ShopError(404, "rest_no_route", "No route was found matching the URL and request method.")

    def _paged(
        self, route: str, query: QueryParams, page: int, per_page: int, total: int, items: list[Any] | RawJson
    ) -> Reply:
        total_pages = math.ceil(total / per_page) if total else 0
        base = self.shop.site_url + API_PREFIX + route
        original = [(k, v) for k, v in query.pairs if k != "page"]
        headers = [("X-WP-Total", str(total)), ("X-WP-TotalPages", str(total_pages))]
        if page > 1:
            prev_page = min(page - 1, total_pages)
            headers.append(("Link", f'<{base}?{urlencode([*original, ("page", str(prev_page))])}>; rel="prev"'))
        if total_pages > page:
            headers.append(("Link", f'<{base}?{urlencode([*original, ("page", str(page + 1))])}>; rel="next"'))
        return 200, items, headers

    # --- orders ------------------------------------------------------------------------------------

    def _orders(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        page, per_page, offset = query.paging()
        statuses = query.listing("status") or ["any"]
        for status in statuses:
            if status != "any" and status not in ORDER_STATUSES:
                raise invalid_param(
                    "status",
                    "status[0] is not one of any, trash, pending, processing, on-hold, "
                    "completed, cancelled, refunded, failed, checkout-draft.",
                )
        include = query.ids("include")
        q = OrderQuery(
            statuses=None if "any" in statuses else frozenset(statuses),
            customer=query.integer("customer", None),
            include=tuple(include) if include is not None else None,
            after=query.date("after"),
            before=query.date("before"),
            modified_after=query.date("modified_after"),
            modified_before=query.date("modified_before"),
            orderby=query.choice("orderby", "date", {"date", "id", "include", "title", "slug", "modified"}),
            order=query.choice("order", "desc", {"asc", "desc"}),
            offset=offset,
            limit=per_page,
        )
        total, encoded = self.shop.list_orders_encoded(q)
        return self._paged("/orders", query, page, per_page, total, encoded)

    def _create_order(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        return 201, self.shop.create_order(**{"status": "pending", "customer_id": 0, **body}), []

    def _order(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        return 200, self.shop.get_order(int(match[1])), []

    def _update_order(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        return 200, self.shop.update_order(int(match[1]), **body), []

    def _delete_order(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        return 200, self.shop.delete_order(int(match[1]), force=query.flag("force")), []

    def _batch_orders(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        groups = {k: body.get(k) or [] for k in ("create", "update", "delete")}
        if sum(len(v) for v in groups.values()) > 100:
            raise ShopError(
                413,
                "woocommerce_rest_request_entity_too_large",
                "Unable to accept more than 100 items for this request.",
            )
        result: dict[str, list[Any]] = {}
        for kind, items in groups.items():
            if not items:
                continue
            out = result.setdefault(kind, [])
            for item in items:
                try:
                    if kind == "create":
                        out.append(self.shop.create_order(**{"status": "pending", "customer_id": 0, **item}))
                    elif kind == "update":
                        fields = {k: v for k, v in item.items() if k != "id"}
                        out.append(self.shop.update_order(int(item.get("id", 0)), **fields))
                    else:
                        out.append(self.shop.delete_order(int(item), force=True))
                except ShopError as error:
                    out.append(
                        {
                            "id": item.get("id", 0) if isinstance(item, dict) else item,
                            "error": error.envelope(),
                        }
                    )
        return 200, result, []

    # --- customers, products -----------------------------------------------------------------------

    def _customers(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        page, per_page, offset = query.paging()
        orderby = query.choice("orderby", "name", {"id", "include", "name", "registered_date"})
        total, items = self.shop.list_customers(
            email=query.first("email"),
            role=query.first("role") or "customer",
            include=query.ids("include"),
            orderby=orderby,
            order=query.choice("order", "asc", {"asc", "desc"}),
            offset=offset,
            limit=per_page,
        )
        return self._paged("/customers", query, page, per_page, total, items)

    def _create_customer(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        return 201, self.shop.create_customer(**{"email": "", **body}), []

    def _customer(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        return 200, self.shop.get_customer(int(match[1])), []

    def _update_customer(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        return 200, self.shop.update_customer(int(match[1]), **body), []

    def _products(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        page, per_page, offset = query.paging()
        total, items = self.shop.list_products(
            status=query.first("status"),
            type_=query.first("type"),
            sku=query.first("sku"),
            include=query.ids("include"),
            after=query.date("after"),
            before=query.date("before"),
            modified_after=query.date("modified_after"),
            modified_before=query.date("modified_before"),
            orderby=query.choice("orderby", "date", {"date", "id", "include", "title", "slug", "modified", "price"}),
            order=query.choice("order", "desc", {"asc", "desc"}),
            offset=offset,
            limit=per_page,
        )
        return self._paged("/products", query, page, per_page, total, items)

    def _product(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        return 200, self.shop.get_product(int(match[1])), []

    def _update_product(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        return 200, self.shop.update_product(int(match[1]), **body), []

    # --- webhooks ----------------------------------------------------------------------------------

    def _webhooks(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        page, per_page, offset = query.paging()
        total, items = self.shop.list_webhooks(
            status=query.choice("status", "all", {"all", "active", "paused", "disabled"}),
            include=query.ids("include"),
            orderby=query.choice("orderby", "date", {"date", "id", "title"}),
            order=query.choice("order", "desc", {"asc", "desc"}),
            offset=offset,
            limit=per_page,
        )
        return self._paged("/webhooks", query, page, per_page, total, items)

    def _create_webhook(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        created = self.shop.create_webhook(
            topic=str(body.get("topic") or ""),
            delivery_url=str(body.get("delivery_url") or ""),
            secret=str(body.get("secret") or ""),
            name=str(body.get("name") or ""),
            status=str(body.get("status") or "active"),
        )
        location = f"{self.shop.site_url}{API_PREFIX}/webhooks/{created['id']}"
        return 201, created, [("Location", location)]

    def _webhook(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        return 200, self.shop.get_webhook(int(match[1])), []

    def _update_webhook(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        return 200, self.shop.update_webhook(int(match[1]), **body), []

    def _delete_webhook(self, match: re.Match[str], query: QueryParams, body: dict[str, Any]) -> Reply:
        if not query.flag("force"):
            raise ShopError(501, "woocommerce_rest_trash_not_supported", "Webhooks do not support trashing.")
        return 200, self.shop.delete_webhook(int(match[1])), []

    # --- control API (fake only) -------------------------------------------------------------------

    def _control(self, method: str, path: str, raw_body: bytes) -> None:
        shop = self.shop
        try:
            body = self._json_body(raw_body) if method == "POST" else {}
            status, payload = 200, None
            if path == "/state" and method == "GET":
                payload = shop.state()
            elif path == "/faults" and method in ("GET", "POST"):
                try:
                    shop.faults.update(body)
                except ValueError as exc:
                    raise ShopError(400, "fake_invalid_fault", str(exc)) from None
                payload = shop.faults.as_dict()
            elif path == "/orders" and method == "POST":
                status, payload = 201, shop.create_order(**body)
            elif (m := re.fullmatch(r"/orders/(\d+)/refunds", path)) and method == "POST":
                payload = shop.refund_order(int(m[1]), str(body.get("amount", "0")), str(body.get("reason", "")))
            elif (m := re.fullmatch(r"/orders/(\d+)/status", path)) and method == "POST":
                payload = shop.set_status(int(m[1]), str(body.get("status", "")))
            elif path == "/flush" and method == "POST":
                payload = {"flushed": shop.flush(float(body.get("timeout", 10)))}
            elif path == "/activity" and method == "POST":
                if body.get("stop"):
                    shop.stop_activity()
                else:
                    shop.start_activity(**{k: float(v) for k, v in body.items()})
                payload = {"activity": not body.get("stop")}
            else:
                raise ShopError(404, "fake_no_route", "Unknown control endpoint.")
        except ShopError as error:
            status, payload = error.status, error.envelope()
        except (TypeError, ValueError) as exc:
            status, payload = 400, {"code": "fake_bad_request", "message": str(exc), "data": {"status": 400}}
        self._send_json(status, payload)


Route = Callable[[_Handler, "re.Match[str]", QueryParams, dict[str, Any]], Reply]
_H = _Handler
_ROUTES: list[tuple[re.Pattern[str], dict[str, Route]]] = [
    (re.compile(r"/orders"), {"GET": _H._orders, "POST": _H._create_order}),
    (re.compile(r"/orders/batch"), {"POST": _H._batch_orders, "PUT": _H._batch_orders}),
    (re.compile(r"/orders/(\d+)"), {"GET": _H._order, "PUT": _H._update_order, "DELETE": _H._delete_order}),
    (re.compile(r"/customers"), {"GET": _H._customers, "POST": _H._create_customer}),
    (re.compile(r"/customers/(\d+)"), {"GET": _H._customer, "PUT": _H._update_customer}),
    (re.compile(r"/products"), {"GET": _H._products}),
    (re.compile(r"/products/(\d+)"), {"GET": _H._product, "PUT": _H._update_product}),
    (re.compile(r"/webhooks"), {"GET": _H._webhooks, "POST": _H._create_webhook}),
    (
        re.compile(r"/webhooks/(\d+)"),
        {"GET": _H._webhook, "PUT": _H._update_webhook, "DELETE": _H._delete_webhook},
    ),
]


class _HTTPServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], shop: FakeWooShop) -> None:
        self.shop = shop
        super().__init__(address, _Handler)


class FakeServer(ServerThread):
    def __init__(self, shop: FakeWooShop, host: str, port: int) -> None:
        super().__init__(_HTTPServer((host, port), shop), name="fake-woo-http", poll_interval=0.02)
