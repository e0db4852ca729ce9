"""A tiny webhook receiver on loopback for tests: records every POST (full URL, headers, form), answers ``status``."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from storeloop.integrations.twilio.signature import parse_form


@dataclass(frozen=True)
class Received:
    url: str  # full URL as Twilio requested it, query string included
    headers: dict[str, str]  # lower-cased names
    form: dict[str, list[str]]

    @property
    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in self.form.items()}


class Receiver:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[Received] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                record = Received(
                    receiver.base + self.path, {k.lower(): v for k, v in self.headers.items()}, parse_form(body)
                )
                with receiver._cond:
                    receiver.received.append(record)
                    receiver._cond.notify_all()
                    status = receiver.status
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", "22")
                self.end_headers()
                self.wfile.write(b"<Response></Response>\n")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str = "/hooks/twilio/status") -> str:
        return self.base + path

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Block until ``count`` requests arrived (deadline, not a fixed sleep)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} webhooks, got {len(self.received)}")
                self._cond.wait(remaining)
            return list(self.received)
