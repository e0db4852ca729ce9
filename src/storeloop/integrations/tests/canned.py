"""``CannedServer``: a small HTTP/1.1 server on loopback that answers canned responses, for client tests.

Raw sockets rather than ``http.server`` so a test can script what a real server or a middlebox does
to a connection: keep it alive, answer chunked or close-delimited, close it while idle, hang up or
reset after reading a request, or hold the answer until the test releases it. It counts accepted
connections and records every request it read, with the number of the connection it came on.

    with CannedServer(Answer(200, b"ok"), default=Answer(502)) as server:
        ...  # first request: 200 "ok", every later one: 502
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

import orjson


@dataclass(frozen=True)
class Received:
    method: str
    target: str  # as sent: path and query string
    headers: dict[str, str]  # lower-cased names
    body: bytes
    connection: int  # 1 for the first accepted connection, 2 for the next...


@dataclass(frozen=True)
class Answer:
    """What the server does with one request.

    ``framing``: "length" (Content-Length), "chunked", or "close" (no length; the connection ends
    the body). ``action``: "answer", "hang_up" (close without answering), "reset" (TCP RST without
    answering), or "answer_then_close" (answer as if keeping the connection, then close it: a
    server's keep-alive timeout). ``hold`` is waited for before answering (a slow server).
    """

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    framing: Literal["length", "chunked", "close"] = "length"
    action: Literal["answer", "hang_up", "reset", "answer_then_close"] = "answer"
    hold: threading.Event | None = field(default=None, compare=False)

    @classmethod
    def json(cls, status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
        return cls(status, orjson.dumps(payload), (("Content-Type", "application/json"), *headers))


Responder = Callable[[Received], Answer]


class CannedServer:
    """Answers ``answers`` in order, then ``default`` (or ``responder(request)`` for every request)."""

    def __init__(
        self,
        *answers: Answer,
        default: Answer | None = None,
        responder: Responder | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._answers = deque(answers)
        self._default = default or Answer(200)
        self._responder = responder
        self._tls = tls
        self._cond = threading.Condition()
        self.requests: list[Received] = []
        self.accepted = 0
        self.closed_by_server = 0  # connections the server ended (after answer_then_close, hang_up...)
        self.closed_by_client = 0  # connections that ended with EOF from the client
        self._holds: list[threading.Event] = []
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://{'localhost' if tls else '127.0.0.1'}:{self.port}"
        self._acceptor = threading.Thread(target=self._accept_loop, name="canned-accept", daemon=True)

    def __enter__(self) -> CannedServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        with self._cond:
            holds, self._holds = list(self._holds), []
            connections = list(self._open)
        for event in holds:
            event.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(5)
        for thread in list(self._threads):
            thread.join(5)

    def wait_for(self, predicate: Callable[[CannedServer], bool], timeout: float = 5.0) -> None:
        """Block until ``predicate(self)`` holds (woken by every server event); fail at the deadline."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout):
                raise AssertionError("the server did not reach the expected state in time")

    # --- serving -----------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._cond:
                self.accepted += 1
                number = self.accepted
                self._open.add(conn)
                self._cond.notify_all()
            thread = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket, number: int) -> None:
        conn = raw
        reader = None
        ended_by = "client"
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(raw, server_side=True)  # takes over raw's descriptor
                with self._cond:
                    self._open.discard(raw)
                    self._open.add(conn)
            reader = conn.makefile("rb")
            while True:
                request = self._read_request(reader, number)
                if request is None:
                    break
                answer = self._answer_for(request)
                if answer.hold is not None:
                    answer.hold.wait(10)
                if answer.action == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    ended_by = "server"
                    break
                if answer.action == "hang_up":
                    ended_by = "server"
                    break
                conn.sendall(_render(answer))
                if answer.action == "answer_then_close" or answer.framing == "close":
                    ended_by = "server"
                    break
                if request.headers.get("connection", "").lower() == "close":
                    break
        except (OSError, ValueError):
            ended_by = "error"
        finally:
            # The file object holds the socket open too: close both, or the peer sees no FIN/RST yet.
            with contextlib.suppress(OSError):
                if reader is not None:
                    reader.close()
                conn.close()
            with self._cond:
                self._open.discard(conn)
                if ended_by == "server":
                    self.closed_by_server += 1
                elif ended_by == "client":
                    self.closed_by_client += 1
                self._cond.notify_all()

    def _read_request(self, reader: Any, number: int) -> Received | None:
        line = reader.readline(65537)
        if not line:
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (header := reader.readline(65537)) not in (b"\r\n", b"\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = reader.read(int(headers.get("content-length") or 0))
        request = Received(method, target, headers, body, number)
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()
        return request

    def _answer_for(self, request: Received) -> Answer:
        if self._responder is not None:
            answer = self._responder(request)
        else:
            with self._cond:
                answer = self._answers.popleft() if self._answers else self._default
        if answer.hold is not None:
            with self._cond:
                self._holds.append(answer.hold)
        return answer


def _render(answer: Answer) -> bytes:
    try:
        reason = HTTPStatus(answer.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {answer.status} {reason}"] + [f"{name}: {value}" for name, value in answer.headers]
    if answer.framing == "length":
        lines.append(f"Content-Length: {len(answer.body)}")
        payload = answer.body
    elif answer.framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        pieces = [answer.body[i : i + 7] for i in range(0, len(answer.body), 7)]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    else:
        payload = answer.body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
