"""Outgoing webhooks of the fake Twilio: status callbacks and inbound messages, signed like Twilio's.

Each webhook is a form POST with ``X-Twilio-Signature`` (computed with the account's auth token over
the exact callback URL and the sorted parameters), ``I-Twilio-Idempotency-Token`` (one per
webhook, the same on Twilio's retry), ``User-Agent: TwilioProxy/1.1``. Like Twilio's default
connection policy, a webhook is retried once when the TCP connection cannot be made, and never after
an HTTP answer (whatever its status: Twilio logs a non-2xx as an error and moves on).

Scheduled work (a message's status steps) runs on one background thread in due-time order, so the
steps of one message always go out in order.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from ..signature import SIGNATURE_HEADER, compute_signature

USER_AGENT = "TwilioProxy/1.1"
WEBHOOK_TIMEOUT = httpx.Timeout(5.0, connect=2.0)


@dataclass(frozen=True, slots=True)
class CallbackRecord:
    """One webhook the fake sent: ``kind`` is ``status`` or ``inbound``; ``status`` the receiver's HTTP
    status (None when no connection could be made, then ``error`` says why)."""

    kind: str
    url: str
    params: Mapping[str, str]
    signature: str
    token: str
    status: int | None
    error: str | None
    attempts: int
    at: float


class WebhookSender:
    """Signs and posts webhooks; runs scheduled actions on one background thread."""

    def __init__(self, auth_token: Callable[[], str], record: Callable[[CallbackRecord], None]) -> None:
        self._auth_token = auth_token
        self._record = record
        self._http: httpx.Client | None = None  # created on first use (an SSL context costs ~0.1 s)
        self._http_lock = threading.Lock()
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._busy = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="fake-twilio-callbacks", daemon=True)
        self._thread.start()

    # --- scheduling --------------------------------------------------------------------------------

    def schedule(self, delay: float, action: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), action))
            self._cond.notify_all()

    def idle(self, timeout: float) -> bool:
        """Wait until nothing is scheduled or running; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    def clear(self) -> None:
        with self._cond:
            self._queue.clear()
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._cond.notify_all()
        self._thread.join(timeout=5)
        with self._http_lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._queue or self._queue[0][0] > time.monotonic()):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(wait if wait is None else max(wait, 0.0005))
                if self._stopped:
                    return
                _, _, action = heapq.heappop(self._queue)
                self._busy = True
            try:
                action()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    # --- delivery ----------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        with self._http_lock:
            if self._http is None:
                self._http = httpx.Client(timeout=WEBHOOK_TIMEOUT, follow_redirects=False)
            return self._http

    def post(self, kind: str, url: str, params: Mapping[str, str], token: str) -> CallbackRecord:
        """POST one signed webhook now (from the calling thread); record and return the outcome."""
        http = self._client()
        signature = compute_signature(self._auth_token(), url, params)
        headers = {
            SIGNATURE_HEADER: signature,
            "I-Twilio-Idempotency-Token": token,
            "User-Agent": USER_AGENT,
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Accept": "*/*",
        }
        status: int | None = None
        error: str | None = None
        attempts = 0
        while attempts < 2:  # one retry, only when no connection could be made
            attempts += 1
            try:
                response = http.post(url, data=dict(params), headers=headers)
            except httpx.ConnectError as exc:
                error = f"{type(exc).__name__}: {exc}"
                continue
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                status, error = response.status_code, None
            break
        record = CallbackRecord(kind, url, dict(params), signature, token, status, error, attempts, time.monotonic())
        self._record(record)
        return record
