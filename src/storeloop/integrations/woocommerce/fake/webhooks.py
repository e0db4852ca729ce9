"""Webhook state and asynchronous delivery, the way WooCommerce does it.

- Deliveries are queued (WooCommerce uses Action Scheduler) and at most one delivery per
  (webhook, resource id) is pending; repeated changes collapse into it. The body is built at send
  time, so it shows the resource's state then, not at the change.
- POST, ``Content-Type: application/json``, PHP-escaped JSON, signed with HMAC-SHA256 (base64).
- Success is a status in 200..302 and resets ``failure_count``; any other outcome disables the
  webhook once ``failure_count > 5`` (the 7th consecutive failure), else increments it. Failed
  deliveries are never retried. Re-enabling does not reset ``failure_count``.
- Creating an active webhook sends an unsigned form-encoded ping ``webhook_id=N``.
"""

from __future__ import annotations

import hashlib
import itertools
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..signature import compute_signature

USER_AGENT = "WooCommerce/9.4.0 Hookshot (WordPress/6.7)"
MAX_FAILURES = 5  # woocommerce_max_webhook_delivery_failures

TOPIC_HOOKS: dict[str, list[str]] = {
    "coupon.created": ["woocommerce_process_shop_coupon_meta", "woocommerce_new_coupon"],
    "coupon.updated": ["woocommerce_process_shop_coupon_meta", "woocommerce_update_coupon"],
    "coupon.deleted": ["wp_trash_post"],
    "coupon.restored": ["untrashed_post"],
    "customer.created": ["user_register", "woocommerce_created_customer", "woocommerce_new_customer"],
    "customer.updated": ["profile_update", "woocommerce_update_customer"],
    "customer.deleted": ["delete_user"],
    "order.created": ["woocommerce_new_order"],
    "order.updated": [
        "woocommerce_update_order",
        "woocommerce_order_refunded",
        "woocommerce_delete_order_refund",
    ],
    "order.deleted": ["wp_trash_post", "woocommerce_trash_order"],
    "order.restored": ["untrashed_post", "woocommerce_untrash_order"],
    "product.created": [
        "woocommerce_process_product_meta",
        "woocommerce_new_product",
        "woocommerce_new_product_variation",
    ],
    "product.updated": [
        "woocommerce_process_product_meta",
        "woocommerce_update_product",
        "woocommerce_update_product_variation",
    ],
    "product.deleted": ["wp_trash_post"],
    "product.restored": ["untrashed_post"],
}
WEBHOOK_STATUSES = ("active", "paused", "disabled")


def valid_topic(topic: str) -> bool:
    return topic in TOPIC_HOOKS or (topic.startswith("action.") and len(topic) > len("action."))


@dataclass
class Faults:
    """Fault switches, read on every request/delivery so they can be flipped at runtime."""

    latency_ms: int = 0  # added to every REST request
    error_rate: float = 0.0  # fraction of REST requests answered 500/502/503
    rate_limit_rate: float = 0.0  # fraction answered 429 with Retry-After: 1
    fail_next: int = 0  # the next N REST requests fail with fail_next_status
    fail_next_status: int = 503
    duplicate_rate: float = 0.0  # deliver twice, distinct delivery ids
    reorder_rate: float = 0.0  # hold a delivery back and send it after the next one
    drop_rate: float = 0.0  # never send
    # Real WooCommerce: delivery id = wp_hash(webhook_id . unix_second), so deliveries of one webhook
    # within the same second share an id. Off by default (unique ids).
    delivery_id_per_second: bool = False

    def update(self, values: dict[str, Any]) -> None:
        """Validate every value first, then apply them all (used by ``POST /__fake__/faults``)."""
        for name, value in values.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(f"unknown fault {name!r}")
            current = getattr(self, name)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"fault {name!r} must be a boolean")
            elif isinstance(current, int):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"fault {name!r} must be a non-negative integer")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"fault {name!r} must be a number between 0 and 1")
        for name, value in values.items():
            setattr(self, name, float(value) if isinstance(getattr(self, name), float) else value)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class WebhookState:
    id: int
    name: str
    status: str
    topic: str
    delivery_url: str
    secret: str
    created_ts: int
    modified_ts: int
    failure_count: int = 0
    pending_delivery: bool = True  # until a ping got HTTP 200
    api_version: int = 3


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One delivery attempt (or ping, or drop) as the fake saw it."""

    webhook_id: int
    topic: str  # "ping" for pings
    resource_id: int | None
    delivery_id: str | None
    status_code: int | None
    error: str | None
    kind: str  # "delivery" | "ping" | "dropped" | "skipped"
    duplicate: bool = False
    at: float = field(default=0.0)


@dataclass(frozen=True, slots=True)
class _Job:
    webhook_id: int
    topic: str
    resource_id: int | None  # None for pings


PayloadBuilder = Callable[[str, str, int], Any]  # (resource, event, id) -> JSON-able payload


class Dispatcher:
    """Queue + one delivery thread. ``flush()`` waits until every queued job was attempted."""

    def __init__(
        self,
        *,
        get_webhook: Callable[[int], WebhookState | None],
        build_payload: PayloadBuilder,
        on_result: Callable[[int, bool, bool], None],  # (webhook_id, success, is_ping)
        faults: Callable[[], Faults],
        source_url: Callable[[], str],
        encode: Callable[[Any], bytes],
        rng: random.Random,
        timeout: float,
        clock: Callable[[], float] = time.time,
        reorder_hold: float = 0.5,
    ) -> None:
        self._get_webhook = get_webhook
        self._build_payload = build_payload
        self._on_result = on_result
        self._faults = faults
        self._source_url = source_url
        self._encode = encode
        self._rng = rng
        self._reorder_hold = reorder_hold
        self._clock = clock
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._pending: set[tuple[int, int]] = set()
        self._unfinished = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._timeout = timeout
        self._http = httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)
        self.log: list[DeliveryRecord] = []

    def start(self) -> None:
        if self._thread is None:
            if self._http.is_closed:  # restarted after stop()
                self._http = httpx.Client(timeout=self._timeout, follow_redirects=False, trust_env=False)
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="fake-woo-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)  # wake the thread now
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._http.close()

    def enqueue(self, webhook_id: int, topic: str, resource_id: int) -> None:
        with self._cond:
            key = (webhook_id, resource_id)
            if key in self._pending:
                return  # WooCommerce keeps one pending delivery per webhook and resource
            self._pending.add(key)
            self._unfinished += 1
        self._queue.put(_Job(webhook_id, topic, resource_id))

    def enqueue_ping(self, webhook_id: int) -> None:
        with self._cond:
            self._unfinished += 1
        self._queue.put(_Job(webhook_id, "ping", None))

    def flush(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._unfinished:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if job is None:  # stop()
                return
            faults = self._faults()
            if faults.reorder_rate and job.resource_id is not None and self._rng.random() < faults.reorder_rate:
                # Hold this one back; whatever comes next (within the hold time) goes first.
                try:
                    following = self._queue.get(timeout=self._reorder_hold)
                except queue.Empty:
                    following = None
                if following is not None:
                    self._attempt(following)
                self._attempt(job)
                if following is None and self._stop.is_set():
                    return
                continue
            self._attempt(job)

    def _attempt(self, job: _Job) -> None:
        try:
            if job.resource_id is None:
                self._ping(job.webhook_id)
            else:
                with self._cond:
                    self._pending.discard((job.webhook_id, job.resource_id))
                self._deliver(job)
        finally:
            with self._cond:
                self._unfinished -= 1
                self._cond.notify_all()

    def _record(self, record: DeliveryRecord) -> None:
        with self._cond:
            self.log.append(record)

    def _ping(self, webhook_id: int) -> None:
        webhook = self._get_webhook(webhook_id)
        if webhook is None:
            return
        code, error = self._post(
            webhook.delivery_url,
            f"webhook_id={webhook_id}".encode(),
            {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": USER_AGENT},
        )
        self._on_result(webhook_id, code == 200, True)  # WooCommerce wants exactly 200 from a ping
        self._record(DeliveryRecord(webhook_id, "ping", None, None, code, error, "ping", at=time.time()))

    def _delivery_id(self, webhook_id: int) -> str:
        if self._faults().delivery_id_per_second:
            seed = f"{webhook_id}{int(self._clock())}"  # wp_hash($id . strtotime('now'))
        else:
            seed = f"{webhook_id}:{next(self._ids)}:{time.time_ns()}"
        return hashlib.blake2s(seed.encode(), digest_size=16).hexdigest()

    def _deliver(self, job: _Job) -> None:
        webhook = self._get_webhook(job.webhook_id)
        if webhook is None:  # deleted meanwhile
            self._record(DeliveryRecord(job.webhook_id, job.topic, job.resource_id, None, None, None, "skipped"))
            return
        faults = self._faults()
        assert job.resource_id is not None
        if faults.drop_rate and self._rng.random() < faults.drop_rate:
            self._record(
                DeliveryRecord(job.webhook_id, job.topic, job.resource_id, None, None, None, "dropped", at=time.time())
            )
            return
        copies = 2 if faults.duplicate_rate and self._rng.random() < faults.duplicate_rate else 1
        resource, _, event = job.topic.partition(".")
        for copy in range(copies):
            body = self._encode(self._build_payload(resource, event, job.resource_id))
            delivery_id = self._delivery_id(webhook.id)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-WC-Webhook-Source": self._source_url(),
                "X-WC-Webhook-Topic": job.topic,
                "X-WC-Webhook-Resource": resource,
                "X-WC-Webhook-Event": event,
                "X-WC-Webhook-Signature": compute_signature(webhook.secret, body),
                "X-WC-Webhook-ID": str(webhook.id),
                "X-WC-Webhook-Delivery-ID": delivery_id,
            }
            code, error = self._post(webhook.delivery_url, body, headers)
            self._on_result(webhook.id, code is not None and 200 <= code < 303, False)
            self._record(
                DeliveryRecord(
                    webhook.id,
                    job.topic,
                    job.resource_id,
                    delivery_id,
                    code,
                    error,
                    "delivery",
                    duplicate=copy > 0,
                    at=time.time(),
                )
            )

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
        try:
            response = self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, type(exc).__name__
        return response.status_code, None
