"""The HTTP plumbing every provider fake shares (WooCommerce, HubSpot, Zoho, Twilio, WhatsApp).

A stdlib ``ThreadingHTTPServer`` that knows its open connections, so ``stop()`` can cut keep-alive
sockets a client still holds, ignores clients that went away, and runs in a daemon thread whose
``url`` is ready before it starts (port 0 picks a free port). Each fake keeps its own handler.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class TrackingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.accepted = 0  # connections accepted so far (tests of connection reuse read it)
        super().__init__(address, handler)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self.accepted += 1
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # client went away (timeouts in tests, closed keep-alive sockets)
        super().handle_error(request, client_address)


class TrackedHandler(BaseHTTPRequestHandler):
    """Registers its connection with a ``TrackingHTTPServer`` for as long as it is open."""

    server: TrackingHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: each fake keeps its own request log


class ServerThread:
    """``httpd`` served from a daemon thread; ``url`` names where it listens."""

    def __init__(self, httpd: TrackingHTTPServer, *, name: str, poll_interval: float = 0.02) -> None:
        self._httpd = httpd
        address = httpd.server_address
        bound_host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{int(address[1])}"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": poll_interval}, name=name, daemon=True
        )

    @property
    def accepted(self) -> int:
        return self._httpd.accepted

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        self._thread.join(timeout=5)
