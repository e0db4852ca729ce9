"""Graph errors and webhooks of the fake WhatsApp Cloud: envelopes, payloads, signed delivery.

Payload shapes follow Meta's ``whatsapp_business_account`` webhooks (as captured in pywa's test data
and Meta's reference). Message titles Meta does not pin down are plausible stand-ins; the client never
parses message text, only ``code``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from ..signature import SIGNATURE_HEADER, sign

# code -> (HTTP status Meta answers with, title). Unlisted codes answer 400.
CODES: dict[int, tuple[int, str]] = {
    0: (401, "AuthException"),
    1: (400, "An unknown error occurred"),
    2: (503, "Service temporarily unavailable"),
    4: (429, "Application request limit reached"),
    10: (403, "Permission denied"),
    100: (400, "Invalid parameter"),
    190: (401, "Invalid OAuth access token - Cannot parse access token"),
    80007: (429, "Rate limit issues"),
    130429: (429, "Rate limit hit"),
    131000: (500, "Something went wrong"),
    131016: (503, "Service unavailable"),
    131026: (400, "Message Undeliverable"),
    131047: (400, "Re-engagement message"),
    131050: (400, "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages"),
    131051: (400, "Unsupported message type"),
    131056: (400, "(Business Account, Consumer Account) pair rate limit hit"),
    132000: (400, "Number of parameters does not match the expected number of params"),
    132001: (400, "Template name does not exist in the translation"),
    132012: (400, "Parameter format does not match format in the created template"),
}
TRANSIENT_CODES = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131056})


class GraphError(Exception):
    """An error answer in Graph's envelope."""

    def __init__(self, code: int, details: str = "", *, status: int | None = None, subcode: int | None = None) -> None:
        default_status, title = CODES.get(code, (400, "Error"))
        super().__init__(f"(#{code}) {title}")
        self.code = code
        self.title = title
        self.status = status or default_status
        self.details = details
        self.subcode = subcode

    def body(self, fbtrace_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": str(self),
            "type": "OAuthException",  # Graph uses it for nearly everything, rate limits included
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": self.details or self.title},
            "fbtrace_id": fbtrace_id,
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.code in TRANSIENT_CODES:
            error["is_transient"] = True
        return {"error": error}

    def webhook_error(self) -> dict[str, Any]:
        """The item shape of ``statuses[].errors[]`` in a ``failed`` status webhook."""
        return {
            "code": self.code,
            "title": self.title,
            "message": self.title,
            "error_data": {"details": self.details or self.title},
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
        }


def envelope(waba_id: str, phone_number_id: str, display: str, value: dict[str, Any]) -> dict[str, Any]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display, "phone_number_id": phone_number_id},
        **value,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": value, "field": "messages"}]}],
    }


def status_item(
    wamid: str,
    status: str,
    recipient: str,
    at: float,
    *,
    category: str,
    conversation_id: str,
    callback_data: str | None,
    error: GraphError | None,
) -> dict[str, Any]:
    item: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(int(at)), "recipient_id": recipient}
    if status in ("sent", "delivered"):  # Meta attaches conversation and pricing to these two
        item["conversation"] = {"id": conversation_id, "origin": {"type": category}}
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": category}
    if callback_data is not None:
        item["biz_opaque_callback_data"] = callback_data
    if error is not None:
        item["errors"] = [error.webhook_error()]
    return item


def inbound_item(
    wamid: str,
    sender: str,
    at: float,
    *,
    text: str | None,
    button_payload: str | None,
    button_text: str | None,
    context_wamid: str | None,
) -> dict[str, Any]:
    item: dict[str, Any] = {"from": sender, "id": wamid, "timestamp": str(int(at))}
    if button_payload is not None or button_text is not None:
        item["type"] = "button"
        item["button"] = {"payload": button_payload or button_text, "text": button_text or button_payload}
    else:
        item["type"] = "text"
        item["text"] = {"body": text or ""}
    if context_wamid:
        item["context"] = {"from": sender, "id": context_wamid}
    return item


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook POST (or handshake GET) the fake made. ``status`` is None when the receiver was unreachable."""

    kind: str  # "status", "inbound" or "verify"
    url: str
    status: int | None
    body: bytes
    signature: str
    at: float


Job = tuple[str, str, dict[str, Any], float]  # kind, url, payload, not-before (monotonic)


class Deliverer:
    """A background thread POSTing signed webhooks in order, with Meta-like retries (few and fast here)."""

    def __init__(self, app_secret: Callable[[], str], record: Callable[[Delivery], None], retries: int = 2) -> None:
        self._app_secret = app_secret
        self._record = record
        self.retries = retries
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="fake-whatsapp-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def put(self, kind: str, url: str, payload: dict[str, Any], delay: float = 0.0) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put((kind, url, payload, time.monotonic() + delay))

    def wait_idle(self, timeout: float) -> bool:
        """True once every queued webhook has been attempted (delivered or given up)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    @property
    def pending(self) -> int:
        with self._idle:
            return self._pending

    def _run(self) -> None:
        with httpx.Client(timeout=5.0, headers={"User-Agent": "facebookexternalua"}) as http:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                try:
                    kind, url, payload, not_before = job
                    wait = not_before - time.monotonic()
                    if wait > 0 and self._stopping.wait(wait):
                        continue
                    self._deliver(http, kind, url, payload)
                finally:
                    with self._idle:
                        self._pending -= 1
                        self._idle.notify_all()

    def _deliver(self, http: httpx.Client, kind: str, url: str, payload: dict[str, Any]) -> None:
        # Meta sends compact JSON with non-ASCII escaped (\uXXXX); the signature covers these bytes.
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        signature = sign(self._app_secret(), body)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature}
        for attempt in range(self.retries + 1):
            status: int | None
            try:
                status = http.post(url, content=body, headers=headers).status_code
            except httpx.HTTPError:
                status = None
            self._record(Delivery(kind, url, status, body, signature, time.time()))
            if status is not None and 200 <= status < 300:
                return
            if attempt < self.retries and self._stopping.wait(0.05 * 2**attempt):
                return
