"""HTTP front of the fake Zoho: accounts server, CRM v8 routes, fault injection, control API.

One stdlib ``ThreadingHTTPServer`` on loopback serves both hosts (``accounts_url == api_url``):
``/oauth/v2/token`` and ``/crm/v8/...``. HTTP/1.1 keep-alive (every answer has Content-Length),
TCP_NODELAY, one thread per connection. ``/__fake__/...`` is the unauthenticated control surface.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from storeloop.integrations.fakehttp import ServerThread, TrackedHandler, TrackingHTTPServer

from .crm import ZohoApiError

if TYPE_CHECKING:
    from .zoho import FakeZoho

API_PREFIX = "/crm/v8"
_INTERNAL = {"code": "INTERNAL_ERROR", "details": {}, "message": "Internal Server Error", "status": "error"}
_PROXY_PAGE = "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center></body></html>"
_REASONS = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable", 504: "504 Gateway Time-out"}
_BAD_URL = {
    "code": "INVALID_URL_PATTERN",
    "details": {},
    "message": "Please check if the URL trying to access is a correct one",
    "status": "error",
}
_RECORD = re.compile(r"/([A-Za-z_]+)/(\d+)")
_UPSERT = re.compile(r"/([A-Za-z_]+)/upsert")


class _Handler(TrackedHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "ZGS"
    sys_version = ""
    timeout = 120
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    @property
    def zoho(self) -> FakeZoho:
        return self.server.zoho

    def _send(self, status: int, body: bytes, content_type: str, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers or []:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> None:
        if status == 204:
            self._send(204, b"", "application/json;charset=UTF-8", headers)
            return
        self._send(status, json.dumps(payload).encode(), "application/json;charset=UTF-8", headers)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        path = parts.path.rstrip("/") or "/"
        if path.startswith("/__fake__/"):
            self._control(method, path[len("/__fake__") :], query, raw)
        elif path.startswith("/oauth/v2/token"):
            self._oauth(method, path, query, raw)
        elif path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            self._api(method, path[len(API_PREFIX) :] or "/", query, raw)
        else:
            self._send(404, b"<html><body>Not Found</body></html>", "text/html")

    # --- accounts server ---------------------------------------------------------------------------

    def _oauth(self, method: str, path: str, query: dict[str, str], raw: bytes) -> None:
        zoho = self.zoho
        if method != "POST":
            zoho.log_request(method, path, 405)
            self._json(405, {"error": "invalid_request_method"})
            return
        form = {**query, **dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))}
        if zoho.take_token_fault():
            zoho.log_request(method, path, 503)
            self._send(503, _PROXY_PAGE.format(_REASONS[503]).encode(), "text/html")
            return
        if path == "/oauth/v2/token/revoke":
            payload = zoho.oauth.revoke_token(form.get("token", ""))
        else:
            payload = zoho.oauth.issue(form, api_domain=zoho.api_url, mint_limit=zoho.faults.token_mint_limit)
        zoho.log_request(method, path, 200)
        self._json(200, payload)  # Zoho answers token errors with HTTP 200 too

    # --- CRM API -----------------------------------------------------------------------------------

    def _api(self, method: str, route: str, query: dict[str, str], raw: bytes) -> None:
        zoho = self.zoho
        full = API_PREFIX + route
        fault = zoho.roll_fault()
        if fault is not None:
            zoho.log_request(method, full, fault)
            self._fault(fault)
            return
        unauthorized = zoho.oauth.authenticate(self.headers.get("Authorization"))
        if unauthorized is not None:
            zoho.log_request(method, full, 401)
            self._json(401, unauthorized)
            return
        wait = zoho.admit_rate()
        if wait is not None:
            zoho.log_request(method, full, 429)
            self._json(
                429,
                {
                    "code": "TOO_MANY_REQUESTS",
                    "details": {"retry_after": max(1, round(wait))},
                    "message": "Rate limit exceeded. Please retry after the specified time.",
                    "status": "error",
                },
            )
            return
        try:
            body = self._body(raw) if method in ("POST", "PUT") else {}
            status, payload = self._route(method, route, query, body)
        except ZohoApiError as error:
            status, payload = error.status, error.body
        if zoho.take_drop():
            # The request was processed, but the answer is lost (a timeout in real life).
            zoho.log_request(method, full, 0)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        zoho.log_request(method, full, status)
        self._json(status, payload)

    def _fault(self, status: int) -> None:
        if status == 429:
            body = {"code": "TOO_MANY_REQUESTS", "details": {}, "message": "too many requests", "status": "error"}
            self._json(429, body)
        elif status in _REASONS:
            self._send(status, _PROXY_PAGE.format(_REASONS[status]).encode(), "text/html")
        elif status >= 500:
            self._json(status, _INTERNAL)
        else:
            self._json(status, {"code": "FAKE_FAULT", "details": {}, "message": "injected fault", "status": "error"})

    @staticmethod
    def _body(raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ZohoApiError(400, "INVALID_DATA", "the input data is invalid", {})
        return body

    def _route(self, method: str, route: str, query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        zoho = self.zoho
        crm = zoho.crm
        if route == "/org" and method == "GET":
            return 200, {"org": [zoho.org()]}
        if route == "/users" and method == "GET":
            return 200, {"users": [zoho.current_user()], "info": {"per_page": 200, "count": 1, "page": 1}}
        if route == "/settings/fields":
            module = query.get("module")
            if not module:
                raise ZohoApiError(
                    400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param_name": "module"}
                )
            if method == "GET":
                return 200, {"fields": crm.fields_metadata(module)}
            if method == "POST":
                specs = body.get("fields")
                if not isinstance(specs, list) or not specs:
                    raise ZohoApiError(400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "fields"})
                answers = [crm.create_field(module, s if isinstance(s, dict) else {}) for s in specs]
                ok = sum(1 for a in answers if a["status"] == "success")
                return (201 if ok == len(answers) else 207 if ok else 400), {"fields": answers}
        if (m := _UPSERT.fullmatch(route)) and method == "POST":
            return crm.upsert(m[1], body)
        if (m := _RECORD.fullmatch(route)) and method == "GET":
            record = crm.get(m[1], m[2])
            return (200, {"data": [record]}) if record is not None else (204, None)
        return 404, _BAD_URL

    # --- control API (fake only) -------------------------------------------------------------------

    def _control(self, method: str, path: str, query: dict[str, str], raw: bytes) -> None:
        zoho = self.zoho
        try:
            body = self._body(raw) if method == "POST" and raw.strip() else {}
            if path == "/state" and method == "GET":
                payload: Any = zoho.state()
            elif path == "/faults" and method in ("GET", "POST"):
                zoho.faults.update(body)
                payload = zoho.faults.as_dict()
            elif path == "/revoke" and method == "POST":
                zoho.revoke_refresh_token()
                payload = {"revoked": True}
            elif path == "/expire" and method == "POST":
                zoho.expire_access_tokens()
                payload = {"expired": True}
            elif path == "/fields/remove" and method == "POST":
                zoho.remove_field(str(body.get("module")), str(body.get("api_name")))
                payload = {"removed": True}
            elif path == "/records" and method == "GET":
                payload = {"data": zoho.records(query.get("module", ""))}
            else:
                self._json(404, {"error": "unknown control endpoint"})
                return
        except ZohoApiError as error:
            self._json(error.status, error.body)
            return
        except (TypeError, ValueError, KeyError) as exc:
            self._json(400, {"error": str(exc)})
            return
        self._json(200, payload)


class _HTTPServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], zoho: FakeZoho) -> None:
        self.zoho = zoho
        super().__init__(address, _Handler)


class FakeServer(ServerThread):
    def __init__(self, zoho: FakeZoho, host: str, port: int) -> None:
        super().__init__(_HTTPServer((host, port), zoho), name="fake-zoho-http", poll_interval=0.02)
