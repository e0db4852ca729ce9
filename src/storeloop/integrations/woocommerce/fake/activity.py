"""A background stream of shop activity: new checkouts (incl. COD), status changes, refunds."""

from __future__ import annotations

import logging
import random
import threading
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .core import ShopError

if TYPE_CHECKING:
    from .shop import FakeWooShop

# Realistic next states per current status (COD orders are often cancelled at the door).
logger = logging.getLogger(__name__)

_NEXT = {
    "pending": ("processing", "processing", "cancelled", "failed"),
    "processing": ("completed", "completed", "completed", "on-hold", "cancelled"),
    "on-hold": ("processing", "processing", "cancelled"),
    "failed": ("pending", "cancelled"),
}


class ActivityStream:
    def __init__(
        self,
        shop: FakeWooShop,
        rng: random.Random,
        orders_per_minute: float,
        status_change_ratio: float,
        refund_ratio: float,
    ) -> None:
        if orders_per_minute <= 0:
            raise ValueError("orders_per_minute must be > 0")
        if status_change_ratio < 0 or refund_ratio < 0 or status_change_ratio + refund_ratio >= 1:
            raise ValueError("status_change_ratio + refund_ratio must be in [0, 1)")
        self._shop = shop
        self._rng = rng
        self._status_ratio = status_change_ratio
        self._refund_ratio = refund_ratio
        # Creations are the remaining share of events, so they happen at orders_per_minute.
        self._events_per_second = orders_per_minute / 60 / (1 - status_change_ratio - refund_ratio)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-woo-activity", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._rng.expovariate(self._events_per_second)):
            try:
                self.step()
            except ShopError:
                continue  # raced with another change (e.g. refunded meanwhile)
            except Exception:  # keep the demo shop alive whatever happens
                logger.exception("fake shop activity step failed")

    def step(self) -> None:
        """One event; falls back to a new order when nothing fits."""
        roll = self._rng.random()
        if roll < self._status_ratio and self._change_status():
            return
        if self._status_ratio <= roll < self._status_ratio + self._refund_ratio and self._refund():
            return
        self._shop.create_order()

    def _recent(self) -> list[dict[str, Any]]:
        ids = list(self._shop.recent_order_ids)
        self._rng.shuffle(ids)
        found: list[dict[str, Any]] = []
        for order_id in ids[:20]:
            try:
                found.append(self._shop.get_order(order_id))
            except ShopError:  # deleted meanwhile
                continue
        return found

    def _change_status(self) -> bool:
        for order in self._recent():
            options = _NEXT.get(str(order["status"]))
            if options:
                target = self._rng.choice(options)
                if order["payment_method"] == "cod" and target == "completed" and self._rng.random() < 0.25:
                    target = "cancelled"  # refused at the door
                self._shop.set_status(int(str(order["id"])), target)
                return True
        return False

    def _refund(self) -> bool:
        for order in self._recent():
            if order["status"] not in ("completed", "processing"):
                continue
            refunded = sum((-Decimal(str(r["total"])) for r in order["refunds"]), Decimal(0))
            remaining = Decimal(str(order["total"])) - refunded
            if remaining <= 0:
                continue
            amount = remaining if self._rng.random() < 0.3 else (remaining * Decimal("0.3")).quantize(Decimal("0.01"))
            if amount > 0:
                self._shop.refund_order(
                    int(str(order["id"])), amount, self._rng.choice(("", "Damaged", "Late delivery"))
                )
                return True
        return False
