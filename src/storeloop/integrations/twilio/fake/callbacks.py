"""Outgoing webhooks of the fake Twilio: status callbacks and inbound messages, signed like Twilio's.

Each webhook is a form POST with ``X-Twilio-Signature`` (computed with the account's auth token over
the exact callback URL and the sorted parameters), ``I-Twilio-Idempotency-Token`` (one per
webhook, the same on Twilio's retry), ``User-Agent: TwilioProxy/1.1``. Like Twilio's default
connection policy, a webhook is retried once when the TCP connection cannot be made, and never after
an HTTP answer (whatever its status: Twilio logs a non-2xx as an error and moves on).

Scheduled work (a message's status steps) runs on one background thread in due-time order, so the
steps of one message always go out in order. Scheduling is a heap push (O(log n)) that wakes the
thread only when the new step is due before every other one: benchmarks schedule a step per message
an hour ahead, and waking the thread per message cost the fake a tenth of its CPU.
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
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the thread: an earlier first due time, or stop
        self._settled = threading.Condition(self._lock)  # idle() callers: nothing scheduled or running
        self._busy = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="fake-twilio-callbacks", daemon=True)
        self._thread.start()

    # --- scheduling --------------------------------------------------------------------------------

    def schedule(self, delay: float, action: Callable[[], None]) -> None:
        entry = (time.monotonic() + delay, next(self._seq), action)
        with self._lock:
            heapq.heappush(self._queue, entry)
            if self._queue[0] is entry:  # else the thread already waits for an earlier step
                self._wake.notify()

    @property
    def scheduled(self) -> int:
        """Steps waiting for their due time."""
        with self._lock:
            return len(self._queue)

    def idle(self, timeout: float) -> bool:
        """Wait until nothing is scheduled or running; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(remaining)
            return True

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._settled.notify_all()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._queue.clear()
            self._wake.notify()
            self._settled.notify_all()
        self._thread.join(timeout=5)
        with self._http_lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopped and (not self._queue or self._queue[0][0] > time.monotonic()):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._wake.wait(wait if wait is None else max(wait, 0.0005))
                if self._stopped:
                    return
                _, _, action = heapq.heappop(self._queue)
                self._busy = True
            try:
                action()
            finally:
                with self._lock:
                    self._busy = False
                    if not self._queue:
                        self._settled.notify_all()

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
