from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from storeloop.integrations.whatsapp.client import WhatsAppClient
from storeloop.integrations.whatsapp.fake import FakeWhatsApp
from storeloop.integrations.whatsapp.models import WebhookBatch, parse_webhook
from storeloop.integrations.whatsapp.signature import SIGNATURE_HEADER, verify_challenge, verify_signature

CUSTOMER = "15551234567"
TEMPLATES: dict[str, tuple[str, int] | tuple[str, int, str]] = {
    "order_update": ("en_US", 2),
    "spring_sale": ("en_US", 0, "MARKETING"),
}


class RecordingLimiter:
    """A ``RateLimiter`` that grants everything and records what it was told."""

    def __init__(self) -> None:
        self.acquired = 0
        self.penalties: list[float] = []

    def acquire(self, cost: int = 1) -> None:
        self.acquired += cost

    def penalize(self, seconds: float) -> None:
        self.penalties.append(seconds)


class Receiver:
    """A small webhook receiver on loopback, doing what Storeloop's endpoint must do.

    GET: the verification handshake. POST: check ``X-Hub-Signature-256`` over the raw body (401 when
    missing, 403 when wrong), parse, answer 200. ``fail_next`` answers N deliveries with 500 first.
    """

    def __init__(self, app_secret: str, verify_token: str) -> None:
        self.app_secret = app_secret
        self.verify_token = verify_token
        self.batches: list[WebhookBatch] = []
        self.raw: list[tuple[bytes, str | None]] = []
        self.rejected = 0
        self.fail_next = 0
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _answer(self, status: int, body: bytes = b"") -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                challenge = verify_challenge(parse_qs(urlsplit(self.path).query), receiver.verify_token)
                if challenge is None:
                    self._answer(403)
                else:
                    self._answer(200, challenge.encode())

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                header = self.headers.get(SIGNATURE_HEADER)
                with receiver._cond:
                    if receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        self._answer(500)
                        return
                    if not verify_signature(receiver.app_secret, raw, header):
                        receiver.rejected += 1
                        self._answer(401 if header is None else 403)
                        return
                    receiver.raw.append((raw, header))
                    receiver.batches.append(parse_webhook(json.loads(raw)))
                    receiver._cond.notify_all()
                self._answer(200)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/webhooks/whatsapp"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float = 5.0) -> bool:
        """Wait (woken by each delivery, bounded by ``timeout``) until ``predicate`` holds."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def statuses(self, wamid: str | None = None) -> list[str]:
        with self._cond:
            return [s.status for b in self.batches for s in b.statuses if wamid is None or s.wamid == wamid]


@pytest.fixture
def fake() -> Iterator[FakeWhatsApp]:
    with FakeWhatsApp(templates=TEMPLATES, seed=5) as started:
        yield started


@pytest.fixture
def receiver(fake: FakeWhatsApp) -> Iterator[Receiver]:
    started = Receiver(fake.app_secret, fake.verify_token)
    fake.webhook_url = started.url
    try:
        yield started
    finally:
        fake.wait_webhooks(2.0)
        started.stop()


@pytest.fixture
def sleeps() -> list[float]:
    """Delays the client asked for (recorded instead of slept)."""
    return []


@pytest.fixture
def limiter() -> RecordingLimiter:
    return RecordingLimiter()


@pytest.fixture
def client(fake: FakeWhatsApp, sleeps: list[float], limiter: RecordingLimiter) -> Iterator[WhatsAppClient]:
    with WhatsAppClient(
        fake.access_token,
        fake.phone_number_id,
        base_url=fake.url,
        limiter=limiter,
        timeout=httpx.Timeout(2.0),
        max_retries=2,
        sleep=sleeps.append,
        backoff_base=0.01,
        backoff_max=0.05,
        rng=random.Random(0),
    ) as c:
        yield c
