"""HTTP front of the fake Twilio: routes, Basic auth, rate limiting, faults, control API.

A stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive, one thread per connection,
TCP_NODELAY (request parsing and single-send responses: ``fakehttp.TrackedHandler``). JSON is
written by orjson (compact; the same objects as before) and forms are read by ``form_fields``: the
fake runs on the benchmark's cores, so its cost per message counts. Order per API request: latency
fault, auth (401 / 20003), rate limit (429 / 20429), injected failure (not processed), route.
Control endpoints under ``/__fake__/`` need no auth and are not rate limited: they exist only in the
fake.

Endpoints (Twilio's): ``GET /2010-04-01/Accounts/{AC}.json``, ``POST|GET .../Messages.json``,
``GET .../Messages/{SM}.json``. Control: ``GET /__fake__/state``, ``GET|POST /__fake__/faults``,
``GET|POST /__fake__/numbers``, ``GET /__fake__/messages``, ``POST /__fake__/inbound``
(``{"from", "body", "to_url"}``), ``POST /__fake__/flush``, ``POST /__fake__/reset``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import math
import re
import socket
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urlsplit

import orjson

from storeloop.integrations.fakehttp import ServerThread, TrackedHandler, TrackingHTTPServer

from .records import API, ApiError, RequestRecord

if TYPE_CHECKING:
    from .account import FakeTwilio

_AUTH = ApiError(401, 20003, "Authenticate")
_DEFAULT_CODES = {429: 20429, 500: 20500, 503: 20503}
_GATEWAY = {502: "Bad Gateway", 504: "Gateway Time-out"}  # answered by the edge, as HTML
_ACCOUNT = re.compile(rf"{API}/Accounts/(AC[0-9a-fA-F]{{32}})\.json")
_MESSAGES = re.compile(rf"{API}/Accounts/(AC[0-9a-fA-F]{{32}})/Messages\.json")
_MESSAGE = re.compile(rf"{API}/Accounts/(AC[0-9a-fA-F]{{32}})/Messages/([A-Z]{{2}}[0-9a-fA-F]{{32}})\.json")


def form_fields(text: str) -> dict[str, str]:
    """``{name: values[0] for name, values in parse_qs(text, keep_blank_values=True).items()}``, with
    no unquoting work for the (usual) fields that need none."""
    fields: dict[str, str] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if name not in fields:
            fields[name] = unquote_plus(value) if "%" in value or "+" in value else value
    return fields


class _Dropped(Exception):
    """The request was processed; answer nothing and close the connection (``accept_then_drop``)."""


class _Handler(TrackedHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-twilio"
    sys_version = ""
    timeout = 120
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    @property
    def twilio(self) -> FakeTwilio:
        return self.server.twilio

    # --- plumbing ----------------------------------------------------------------------------------

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        if status in _GATEWAY:
            body = f"<html><body><h1>{status} {_GATEWAY[status]}</h1></body></html>".encode()
            content_type = "text/html"
        else:
            body, content_type = orjson.dumps(payload), "application/json; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Twilio-Request-Id", self.twilio.sid("RQ"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        if parts.path.startswith("/__fake__/"):
            self._control(method, parts.path[len("/__fake__") :], raw)
            return
        form = form_fields(raw.decode("utf-8")) if raw else {}
        query = form_fields(parts.query) if parts.query else {}
        try:
            status, payload, headers = self._api(method, parts.path, form, query)
        except _Dropped:
            self.twilio.log_request(RequestRecord(method, parts.path, 0, time.monotonic(), form or None))
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.twilio.log_request(RequestRecord(method, parts.path, status, time.monotonic(), form or None))
        self._send(status, payload, headers)

    def _api(
        self, method: str, path: str, form: dict[str, str], query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        twilio = self.twilio
        if twilio.faults.latency_ms:
            time.sleep(twilio.faults.latency_ms / 1000)
        if not self._authenticated():
            return (
                _AUTH.status,
                {**_AUTH.body(), "detail": "Your AccountSid or AuthToken was incorrect."},
                {"WWW-Authenticate": 'Basic realm="Twilio API"'},
            )
        wait = twilio.admit()
        if wait is not None:
            return self._error(ApiError(429, 20429, "Too Many Requests"), wait)
        fault = twilio.roll_fault()
        if fault is not None:
            status, code = fault
            return self._error(ApiError(status, code or _DEFAULT_CODES.get(status), f"Injected fault ({status})"), 1.0)
        try:
            return self._route(method, path, form, query)
        except ApiError as error:
            return self._error(error, 1.0)

    def _error(self, error: ApiError, wait: float) -> tuple[int, Any, dict[str, str]]:
        headers: dict[str, str] = {}
        if error.status == 429 and self.twilio.faults.retry_after:
            headers["Retry-After"] = str(max(self.twilio.faults.retry_after, math.ceil(wait)))
        return error.status, error.body(), headers

    def _authenticated(self) -> bool:
        header = self.headers.get("Authorization") or ""
        if header[:6].lower() != "basic ":
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        twilio = self.twilio
        return hmac.compare_digest(user.encode(), twilio.account_sid.encode()) and hmac.compare_digest(
            password.encode(), twilio.auth_token.encode()
        )

    def _route(
        self, method: str, path: str, form: dict[str, str], query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        twilio = self.twilio
        not_found = ApiError(404, 20404, f"The requested resource {path} was not found")
        if (m := _ACCOUNT.fullmatch(path)) and method == "GET":
            if m[1] != twilio.account_sid:
                raise not_found
            return 200, twilio.account_json(), {}
        if (m := _MESSAGES.fullmatch(path)) and m[1] == twilio.account_sid:
            if method == "POST":
                payload = twilio.create_message(form)
                if twilio.take_drop():
                    raise _Dropped
                return 201, payload, {}
            return 200, self._list(path, query), {}
        if (m := _MESSAGE.fullmatch(path)) and method == "GET" and m[1] == twilio.account_sid:
            found = twilio.message(m[2])
            if found is None:
                raise not_found
            return 200, found.as_json(twilio.account_sid), {}
        raise not_found

    def _list(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        twilio = self.twilio
        size = min(max(int(query.get("PageSize", "50") or 50), 1), 1000)
        rows = [
            m.as_json(twilio.account_sid)
            for m in reversed(twilio.messages)  # newest first
            if ("To" not in query or m.to == query["To"]) and ("From" not in query or m.from_ == query["From"])
        ][:size]
        return {
            "end": max(len(rows) - 1, 0),
            "first_page_uri": f"{path}?PageSize={size}&Page=0",
            "messages": rows,
            "next_page_uri": None,
            "page": 0,
            "page_size": size,
            "previous_page_uri": None,
            "start": 0,
            "uri": f"{path}?PageSize={size}&Page=0",
        }

    # --- control API (fake only) -------------------------------------------------------------------

    def _control(self, method: str, path: str, raw: bytes) -> None:
        try:
            body = orjson.loads(raw) if method == "POST" and raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            payload = self._control_route(method, path, body)
        except (TypeError, ValueError, KeyError) as exc:
            self._send(400, {"message": str(exc)})
            return
        if payload is None:
            self._send(404, {"message": f"unknown control endpoint {method} {path}"})
            return
        self._send(200, payload)

    def _control_route(self, method: str, path: str, body: dict[str, Any]) -> Any:
        twilio = self.twilio
        if path == "/state" and method == "GET":
            return twilio.state()
        if path == "/faults" and method in ("GET", "POST"):
            with twilio.lock:
                twilio.faults.update(body)
                return twilio.faults.as_dict()
        if path == "/numbers" and method in ("GET", "POST"):
            with twilio.lock:
                for name, values in body.items():
                    if name not in twilio.numbers.__dataclass_fields__ or not isinstance(values, list):
                        raise ValueError(f"unknown number set {name!r} (or not a list)")
                    setattr(twilio.numbers, name, {str(v) for v in values})
                return {k: sorted(getattr(twilio.numbers, k)) for k in twilio.numbers.__dataclass_fields__}
        if path == "/messages" and method == "GET":
            return [m.as_json(twilio.account_sid) for m in twilio.messages]
        if path == "/inbound" and method == "POST":
            record = twilio.simulate_inbound(str(body["from"]), str(body["body"]), str(body["to_url"]))
            return {"status": record.status, "error": record.error, "params": dict(record.params)}
        if path == "/flush" and method == "POST":
            return {"idle": twilio.flush(float(body.get("timeout", 5.0)))}
        if path == "/reset" and method == "POST":
            twilio.reset()
            return {"reset": True}
        return None


class _HTTPServer(TrackingHTTPServer):
    def __init__(self, address: tuple[str, int], twilio: FakeTwilio) -> None:
        self.twilio = twilio
        super().__init__(address, _Handler)


class FakeServer(ServerThread):
    def __init__(self, twilio: FakeTwilio, host: str, port: int) -> None:
        super().__init__(_HTTPServer((host, port), twilio), name="fake-twilio-http", poll_interval=0.05)
