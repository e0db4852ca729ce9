"""HTTP front of the fake HubSpot: routes, bearer auth, rate limiting, faults, control API.

A stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive (every response has a
Content-Length), one thread per connection, TCP_NODELAY, orjson. Order per API request: latency
fault, auth (401), rate limit (429), injected failure (5xx/...), route. Control endpoints under
``/__fake__/`` need no token and are not rate limited: they exist only in the fake.
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import orjson

from storeloop.integrations.fakehttp import ServerThread, TrackedHandler, TrackingHTTPServer

from .schema import CrmError, object_type
from .store import now_iso

if TYPE_CHECKING:
    from .hub import FakeHubSpot

Reply = tuple[int, Any]
Query = dict[str, list[str]]

_AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can "
    "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
_GATEWAY_PAGE = b"<html><head><title>%d</title></head><body><h1>%d %s</h1></body></html>"
_REASONS = {502: "Bad Gateway", 504: "Gateway Timeout"}


class _Handler(TrackedHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "fake-hubspot"
    sys_version = ""
    timeout = 120  # idle keep-alive connections eventually let their thread go
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    @property
    def hub(self) -> FakeHubSpot:
        return self.server.hub

    # --- plumbing ----------------------------------------------------------------------------------

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        body = raw if raw is not None else (b"" if status == 204 else orjson.dumps(payload))
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", "text/html" if raw is not None else "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _error(self, error: CrmError, headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        return error.status, error.body(self.hub.correlation_id()), headers or {}

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        if path.startswith("/__fake__/"):
            self._control(method, path[len("/__fake__") :], raw)
            return
        status, payload, headers = self._api(method, path, parse_qs(parts.query), raw)
        self.hub.log_request(method, path, status)  # before sending: the client may be gone by then
        if status in _REASONS:  # gateways in front of HubSpot answer with HTML
            self._send(status, None, headers, _GATEWAY_PAGE % (status, status, _REASONS[status].encode()))
        else:
            self._send(status, payload, headers)

    def _api(self, method: str, path: str, query: Query, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        hub = self.hub
        if hub.faults.latency_ms:
            hub.roll_latency()
        token = (self.headers.get("Authorization") or "")[7:].strip()
        header_ok = (self.headers.get("Authorization") or "")[:7].lower() == "bearer "
        if not header_ok or not any(hmac.compare_digest(token.encode(), t.encode()) for t in hub.tokens):
            return self._error(CrmError(401, "INVALID_AUTHENTICATION", _AUTH_MESSAGE))
        search = method == "POST" and path.endswith("/search")
        wait, headers = hub.admit(token, search=search)
        if wait is not None:
            return self._rate_limited(wait, headers, search)
        fault = hub.roll_fault(path)
        if fault is not None and not hub.faults.fail_next_after_apply:
            return self._fault(fault, headers)
        try:
            body = self._json(raw) if method in ("POST", "PATCH", "PUT") else {}
            status, payload = self._route(method, path, query, body)
        except CrmError as error:
            status, payload, headers = self._error(error, headers)
        if fault is not None:  # applied, but the answer is lost
            return self._fault(fault, headers)
        return status, payload, headers

    def _rate_limited(self, wait: float, headers: dict[str, str], search: bool) -> tuple[int, Any, dict[str, str]]:
        hub = self.hub
        policy = "SECONDLY" if search else "TEN_SECONDLY_ROLLING"
        body = {
            "status": "error",
            "message": f"You have reached your {policy.lower()} limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": hub.correlation_id(),
            "policyName": policy,
            "requestId": hub.correlation_id(),
        }
        if hub.faults.retry_after:
            headers = {**headers, "Retry-After": str(max(1, math.ceil(wait)))}
        return 429, body, headers

    def _fault(self, status: int, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if status == 429:
            return self._rate_limited(1.0, headers, False)
        if status in _REASONS:
            return status, None, headers
        category = {401: "INVALID_AUTHENTICATION", 403: "MISSING_SCOPES", 400: "VALIDATION_ERROR"}.get(
            status, "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR"
        )
        return self._error(CrmError(status, category, f"Injected fault ({status})."), headers)

    @staticmethod
    def _json(raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            return {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CrmError(400, "VALIDATION_ERROR", f"Invalid input JSON: {exc}") from None
        if not isinstance(body, dict):
            raise CrmError(400, "VALIDATION_ERROR", "Invalid input JSON: expected an object")
        return body

    def _route(self, method: str, path: str, query: Query, body: dict[str, Any]) -> Reply:
        for route_method, pattern, handler in _ROUTES:
            if route_method == method and (match := pattern.fullmatch(path)) is not None:
                with self.hub.lock:
                    return handler(self, match, query, body)
        raise CrmError(404, "OBJECT_NOT_FOUND", f"No route for {method} {path}")

    # --- routes ------------------------------------------------------------------------------------

    @staticmethod
    def _names(query: Query) -> list[str] | None:
        names = [n for value in query.get("properties", []) for n in value.split(",") if n]
        return names or None

    def _list(self, m: re.Match[str], query: Query, body: dict[str, Any]) -> Reply:
        limit = int(query.get("limit", ["10"])[0])
        after = int(query.get("after", ["0"])[0] or 0)
        return self.hub.crm.list(object_type(m[1]), limit, after, self._names(query))

    def _create(self, m: re.Match[str], query: Query, body: dict[str, Any]) -> Reply:
        return self.hub.crm.create(object_type(m[1]), body)

    def _get(self, m: re.Match[str], query: Query, body: dict[str, Any]) -> Reply:
        id_prop = query.get("idProperty", [None])[0]
        return self.hub.crm.get(object_type(m[1]), m[2], id_prop, self._names(query))

    def _batch(self, m: re.Match[str], query: Query, body: dict[str, Any]) -> Reply:
        hub, kind, crm = self.hub, m[2], self.hub.crm
        obj = object_type(m[1])
        if kind == "read":
            return crm.batch_read(obj, body)
        if kind == "archive":
            return crm.batch_archive(obj, body)
        handler = {"upsert": crm.batch_upsert, "create": crm.batch_create, "update": crm.batch_update}[kind]
        return handler(obj, body, hub.faults.multi_status, hub.record_fault)

    def _search(self, m: re.Match[str], query: Query, body: dict[str, Any]) -> Reply:
        return 200, self.hub.crm.objects.search(object_type(m[1]), body, self.hub.faults.search_lag_ms / 1000)

    def _properties(self, m: re.Match[str], query: Query, body: dict[str, Any]) -> Reply:
        defs = self.hub.crm.objects.properties[object_type(m[1])]
        return 200, {"results": list(defs.values())}

    def _create_property(self, m: re.Match[str], query: Query, body: dict[str, Any]) -> Reply:
        return 201, self.hub.crm.objects.create_property(object_type(m[1]), body)

    def _property(self, m: re.Match[str], query: Query, body: dict[str, Any]) -> Reply:
        return 200, self.hub.crm.objects.get_property(object_type(m[1]), m[2])

    def _create_group(self, m: re.Match[str], query: Query, body: dict[str, Any]) -> Reply:
        return 201, self.hub.crm.objects.create_group(object_type(m[1]), body)

    def _assoc_batch(self, m: re.Match[str], query: Query, body: dict[str, Any]) -> Reply:
        graph, now = self.hub.crm.graph, now_iso()
        from_type, to_type, kind = object_type(m[1]), object_type(m[2]), m[3]
        if kind == "associate/default":
            return graph.associate_default(from_type, to_type, body, now)
        if kind == "create":
            return graph.create_labeled(from_type, to_type, body, now)
        return graph.read(from_type, to_type, body, now)

    def _assoc_list(self, m: re.Match[str], query: Query, body: dict[str, Any]) -> Reply:
        from_type, to_type = object_type(m[1]), object_type(m[3])
        offset = int(query.get("after", ["0"])[0] or 0)
        rows, after = self.hub.crm.graph.page(from_type, m[2], to_type, offset)
        out: dict[str, Any] = {"results": rows}
        if after is not None:
            out["paging"] = {"next": {"after": after, "link": ""}}
        return 200, out

    # --- control API (fake only) -------------------------------------------------------------------

    def _control(self, method: str, path: str, raw: bytes) -> None:
        hub = self.hub
        try:
            body = self._json(raw) if method == "POST" else {}
            if path == "/state" and method == "GET":
                payload: Any = hub.state()
            elif path == "/faults" and method in ("GET", "POST"):
                with hub.lock:
                    hub.faults.update(body)
                payload = hub.faults.as_dict()
            elif path == "/limits" and method == "POST":
                with hub.lock:
                    hub.rate_limit = int(body.get("rate_limit", hub.rate_limit))
                    hub.window_seconds = float(body.get("window_seconds", hub.window_seconds))
                    hub.search_rate_limit = int(body.get("search_rate_limit", hub.search_rate_limit))
                payload = {"rate_limit": hub.rate_limit, "window_seconds": hub.window_seconds}
            elif path == "/duplicates" and method == "GET":
                payload = hub.duplicate_groups()
            elif path == "/reset" and method == "POST":
                hub.reset()
                payload = {"reset": True}
            else:
                raise CrmError(404, "OBJECT_NOT_FOUND", "Unknown control endpoint.")
        except CrmError as error:
            self._send(error.status, error.body(hub.correlation_id()))
            return
        except (TypeError, ValueError) as exc:
            self._send(400, {"status": "error", "message": str(exc), "category": "VALIDATION_ERROR"})
            return
        self._send(200, payload)


Route = Callable[[_Handler, "re.Match[str]", Query, dict[str, Any]], Reply]
_H = _Handler
_T = r"([A-Za-z0-9_-]+)"
_ROUTES: list[tuple[str, re.Pattern[str], Route]] = [
    ("POST", re.compile(rf"/crm/v3/objects/{_T}/batch/(upsert|create|update|read|archive)"), _H._batch),
    ("POST", re.compile(rf"/crm/v3/objects/{_T}/search"), _H._search),
    ("GET", re.compile(rf"/crm/v3/objects/{_T}"), _H._list),
    ("POST", re.compile(rf"/crm/v3/objects/{_T}"), _H._create),
    ("GET", re.compile(rf"/crm/v3/objects/{_T}/([^/]+)"), _H._get),
    ("GET", re.compile(rf"/crm/v3/properties/{_T}"), _H._properties),
    ("POST", re.compile(rf"/crm/v3/properties/{_T}"), _H._create_property),
    ("POST", re.compile(rf"/crm/v3/properties/{_T}/groups"), _H._create_group),
    ("GET", re.compile(rf"/crm/v3/properties/{_T}/([^/]+)"), _H._property),
    ("POST", re.compile(rf"/crm/v4/associations/{_T}/{_T}/batch/(associate/default|create|read)"), _H._assoc_batch),
    ("GET", re.compile(rf"/crm/v4/objects/{_T}/(\d+)/associations/{_T}"), _H._assoc_list),
]


class _HTTPServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], hub: FakeHubSpot) -> None:
        self.hub = hub
        super().__init__(address, _Handler)


class FakeServer(ServerThread):
    def __init__(self, hub: FakeHubSpot, host: str, port: int) -> None:
        super().__init__(_HTTPServer((host, port), hub), name="fake-hubspot-http", poll_interval=0.02)
