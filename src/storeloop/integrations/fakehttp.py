"""The HTTP plumbing every provider fake shares (WooCommerce, HubSpot, Zoho, Twilio, WhatsApp).

A stdlib ``ThreadingHTTPServer`` that knows its open connections, so ``stop()`` can cut keep-alive
sockets a client still holds, ignores clients that went away, and runs in a daemon thread whose
``url`` is ready before it starts (port 0 picks a free port). Each fake keeps its own handler.

``TrackedHandler`` is cheaper per request than ``BaseHTTPRequestHandler`` (the fakes share the cores of
the system they measure in benchmarks), with the same contract for the fakes:

- the header block is read by ``read_headers`` instead of ``http.client.parse_headers``, whose
  ``email`` feed parser was a fifth of a fake's CPU. ``self.headers`` is still an
  ``http.client.HTTPMessage`` holding the same (name, value) pairs the stdlib would store (value:
  leading spaces/tabs and the line end removed), so ``.get``, ``[]``, ``in``, ``get_all`` and
  ``items()`` answer as before. Same limits and answers: a line over 65,536 bytes, or more than 99
  headers (``http.client`` counts the empty line against its 100), is 431. Stricter where the stdlib
  keeps a fold's CRLF in the value or silently moves the rest of the block to the body: an obsolete
  folded line (starting with a space or tab), a line without a name and colon (or with space before
  the colon) and a bare CR are answered 400, as RFC 9112 sections 5.2, 5.1 and 2.2 allow;
- the request line follows ``BaseHTTPRequestHandler.parse_request`` (same checks and answers);
- the response goes out in one send (buffered ``wfile``, flushed per request by
  ``handle_one_request``; ``100 Continue`` is flushed at once), not one for the headers and one for
  the body;
- the ``Date`` header is formatted once per second, not per response.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

MAX_LINE = 65536  # http.client's limits for a header line and the number of header lines
MAX_HEADERS = 100
_HEADER_LINE = re.compile(r"([!-9;-~]+):[ \t]*([^\r\n]*)\r*\n?\Z")  # name: printable ASCII but ":"


class LineReader(Protocol):
    def readline(self, size: int, /) -> bytes: ...


class HeaderError(Exception):
    """A request header block the fakes refuse: ``status``, ``message`` and ``explain`` for ``send_error``."""

    def __init__(self, status: HTTPStatus, message: str, explain: str) -> None:
        super().__init__(explain)
        self.status = status
        self.message = message
        self.explain = explain


def read_headers(rfile: LineReader) -> HTTPMessage:
    """Read a request's header block up to the empty line; raise ``HeaderError`` (see the module docstring)."""
    headers = HTTPMessage()
    count = 0
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise HeaderError(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Line too long",
                f"got more than {MAX_LINE} bytes when reading header line",
            )
        count += 1  # the empty line counts too, as in http.client: at most 99 headers
        if count > MAX_HEADERS:
            raise HeaderError(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", f"got more than {MAX_HEADERS} headers"
            )
        if line in (b"\r\n", b"\n", b""):
            return headers
        match = _HEADER_LINE.match(line.decode("iso-8859-1"))
        if match is None:
            folded = line[:1] in (b" ", b"\t")
            raise HeaderError(
                HTTPStatus.BAD_REQUEST,
                "Obsolete line folding" if folded else "Bad header line",
                "obsolete line folding is not accepted" if folded else "expected 'name: value'",
            )
        headers[match[1]] = match[2]


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
    """Registers its connection with a ``TrackingHTTPServer`` for as long as it is open; cheaper per
    request than the stdlib handler (see the module docstring)."""

    server: TrackingHTTPServer
    raw_requestline: bytes
    wbufsize = 1 << 16  # one send per response up to 64 KiB
    _date: tuple[int, str] = (0, "")  # (second, Date header), shared by every handler

    def parse_request(self) -> bool:
        # BaseHTTPRequestHandler.parse_request (3.11), the header block apart.
        self.command = ""
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            number = _http_version(version)
            if number is None:
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
                self.close_connection = False
            if number >= (2, 0):
                self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({version[5:]})")
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        if path.startswith("//"):
            self.path = "/" + path.lstrip("/")  # gh-87389: no open redirects through "//host"
        try:
            self.headers = read_headers(self.rfile)
        except HeaderError as error:
            self.send_error(error.status, error.message, error.explain)
            return False
        connection = (self.headers.get("Connection") or "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        expect = (self.headers.get("Expect") or "").lower()
        if expect == "100-continue" and self.protocol_version >= "HTTP/1.1" and self.request_version >= "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def handle_expect_100(self) -> bool:
        accepted = super().handle_expect_100()
        self.wfile.flush()  # the client waits for it before sending the body
        return accepted

    def date_time_string(self, timestamp: float | None = None) -> str:
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        cached = TrackedHandler._date
        if cached[0] != now:
            cached = (now, super().date_time_string(now))
            TrackedHandler._date = cached  # one tuple swap: safe to share between handler threads
        return cached[1]

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

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return  # (would only format a line for log_message)


def _http_version(version: str) -> tuple[int, int] | None:
    """``(major, minor)`` of ``HTTP/x.y`` as ``BaseHTTPRequestHandler`` accepts it, else None."""
    if not version.startswith("HTTP/"):
        return None
    parts = version[5:].split(".")
    if len(parts) != 2 or not all(part.isdigit() and len(part) <= 10 for part in parts):
        return None
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:  # "²" is a digit to isdigit(), not to int(): a 400 as in the stdlib
        return None


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
