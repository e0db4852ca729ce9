"""HTTP front of the fake WhatsApp Cloud: routes, bearer auth, throughput limit, faults, control API.

A stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive, one thread per connection,
TCP_NODELAY. Order per API request: latency fault, auth (190), route + phone number id (100),
throughput limit (130429, sends only), injected failure, then the send itself; ``accept_then_drop``
closes the connection *after* the send was accepted, without an answer. Control endpoints under
``/__fake__/`` need no token and are never limited: they exist only in the fake.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import orjson

from storeloop.integrations.fakehttp import ServerThread, TrackedHandler, TrackingHTTPServer

from .webhooks import GraphError

if TYPE_CHECKING:
    from .core import FakeWhatsApp

_SEND = re.compile(r"/(v\d+\.\d+)/([^/]+)/messages")
_NODE = re.compile(r"/(v\d+\.\d+)/([^/]+)")
_GATEWAY_PAGE = b"<html><head><title>%d</title></head><body><h1>%d %s</h1></body></html>"
_REASONS = {502: "Bad Gateway", 504: "Gateway Timeout"}


class _Handler(TrackedHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "fake-whatsapp-cloud"
    sys_version = ""
    timeout = 120
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: _HTTPServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    @property
    def wa(self) -> FakeWhatsApp:
        return self.server.wa

    # --- plumbing ----------------------------------------------------------------------------------

    def _send(self, status: int, payload: Any, raw: bytes | None = None) -> None:
        body = raw if raw is not None else orjson.dumps(payload)
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if raw is not None else "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query)
        if path.startswith("/__fake__/"):
            self._control(method, path[len("/__fake__") :], raw)
            return
        try:
            status, payload, drop = self._api(method, path, query, raw)
        except GraphError as error:
            status, payload, drop = error.status, error.body(self.wa.fbtrace_id()), False
        self.wa.log_request(method, path, 0 if drop else status)  # before answering: the client may be gone
        if drop:
            self.close_connection = True  # accepted, but the answer is lost: close without a byte
            return
        if status in _REASONS:
            self._send(status, None, _GATEWAY_PAGE % (status, status, _REASONS[status].encode()))
        else:
            self._send(status, payload)

    def _token(self, query: dict[str, list[str]]) -> str | None:
        header = self.headers.get("Authorization") or ""
        if header[:7].lower() == "bearer ":
            return header[7:].strip()
        return query.get("access_token", [None])[0]  # Graph also takes the token as a query parameter

    def _api(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> tuple[int, Any, bool]:
        wa = self.wa
        if wa.faults.latency_ms:
            time.sleep(wa.faults.latency_ms / 1000)
        wa.check_token(self._token(query))
        send = _SEND.fullmatch(path) if method == "POST" else None
        node = _NODE.fullmatch(path) if method == "GET" else None
        match = send or node
        if match is None:
            raise GraphError(100, f"Unsupported {method.lower()} request on {path}.", subcode=33)
        if match[2] != wa.phone_number_id:
            raise GraphError(
                100,
                f"Unsupported {method.lower()} request. Object with ID '{match[2]}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation.",
                subcode=33,
            )
        if send is not None:
            wa.admit_send()
        fault = wa.roll_fault()
        if fault is not None:
            if fault.status in _REASONS:
                return fault.status, None, False
            raise fault
        if node is not None:
            fields = [f for value in query.get("fields", []) for f in value.split(",") if f]
            return 200, wa.phone_number(fields), False
        body = self._json(raw)
        answer = wa.send(body)
        return 200, answer, wa.take_drop()

    @staticmethod
    def _json(raw: bytes) -> dict[str, Any]:
        try:
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            raise GraphError(100, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise GraphError(100, "The request body must be a JSON object.")
        return body

    # --- control API (fake only) -------------------------------------------------------------------

    def _control(self, method: str, path: str, raw: bytes) -> None:
        wa = self.wa
        try:
            body = orjson.loads(raw) if method == "POST" and raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            if path == "/state" and method == "GET":
                payload: Any = wa.state()
            elif path == "/faults" and method in ("GET", "POST"):
                with wa.lock:
                    wa.faults.update(body)
                payload = wa.faults.as_dict()
            elif path == "/webhook" and method == "POST":
                url = body.get("url")
                if url is not None and not isinstance(url, str):
                    raise ValueError("url must be a string or null")
                wa.webhook_url = url
                payload = {"webhook_url": url}
            elif path == "/inbound" and method == "POST":
                sender, text = body.get("from"), body.get("text")
                if not isinstance(sender, str) or not isinstance(text, str):
                    raise ValueError("inbound needs 'from' and 'text' strings")
                payload = {"wamid": wa.simulate_inbound(sender, text)}
            elif path == "/verify" and method == "POST":
                url = body.get("url")
                payload = {"verified": wa.verify_webhook(url if isinstance(url, str) else None)}
            elif path == "/reset" and method == "POST":
                wa.reset()
                payload = {"reset": True}
            else:
                self._send(404, {"error": "unknown control endpoint"})
                return
        except (TypeError, ValueError, orjson.JSONDecodeError) as exc:
            self._send(400, {"error": str(exc)})
            return
        self._send(200, payload)


class _HTTPServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], wa: FakeWhatsApp) -> None:
        self.wa = wa
        super().__init__(address, _Handler)


class FakeServer(ServerThread):
    def __init__(self, wa: FakeWhatsApp, host: str, port: int) -> None:
        super().__init__(_HTTPServer((host, port), wa), name="fake-whatsapp-http", poll_interval=0.05)
