"""Reconciliation: repair what webhooks missed by walking the shop's orders by modification time.

WooCommerce webhooks get lost (no redelivery, disabled after failures), so every few minutes each
store is swept: orders modified after the watermark are fetched in ``date_modified_gmt`` order and
applied through the same versioned upsert as webhooks, one committed page at a time. The cursor is
the time itself (keyset, see ``orders.walk``), not a page number.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from storeloop.core.errors import NotFound
from storeloop.integrations.woocommerce.client import WooCommercePort
from storeloop.orders.mirror import apply_order
from storeloop.orders.walk import walk_modified
from storeloop.stores.models import Store
from storeloop.stores.services import ensure_webhooks
from storeloop.stores.woo import client_for

logger = logging.getLogger("storeloop.reconcile")


@dataclass
class ReconcileResult:
    store_id: int
    fetched: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    watermark: dt.datetime | None = None
    webhooks_repaired: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "store_id": self.store_id,
            "fetched": self.fetched,
            "outcomes": dict(self.outcomes),
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "webhooks_repaired": self.webhooks_repaired,
        }


def reconcile_store(store_id: int, *, client: WooCommercePort | None = None) -> ReconcileResult:
    """Fetch orders modified since the watermark and apply them; check our webhooks on the shop."""
    store = Store.objects.filter(pk=store_id).first()
    if store is None:
        raise NotFound(f"no store {store_id}", code="store_not_found")
    result = ReconcileResult(store_id=store.pk, watermark=store.reconciled_until)
    own_client = client is None
    active = client or client_for(store)
    try:
        for items in walk_modified(active, store.reconciled_until):
            with transaction.atomic(durable=True):
                for snapshot in items:
                    result.outcomes[str(apply_order(store, snapshot))] += 1
                newest = max(o.date_modified_gmt for o in items)
                if result.watermark is None or newest > result.watermark:
                    result.watermark = newest
                # Checkpoint after each committed page: a killed run resumes from here.
                Store.objects.filter(pk=store.pk).update(reconciled_until=result.watermark)
            result.fetched += len(items)
        if store.manage_webhooks:
            for hook in ensure_webhooks(store):
                if hook.last_problem_at and hook.last_checked_at == hook.last_problem_at:
                    result.webhooks_repaired.append(hook.topic)
        Store.objects.filter(pk=store.pk).update(last_reconciled_at=timezone.now(), last_reconcile_error="")
    except Exception as exc:
        Store.objects.filter(pk=store.pk).update(last_reconcile_error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        if own_client:
            active.close()  # type: ignore[attr-defined]
    logger.info("reconciled store %s: %s", store.pk, result.as_dict())
    return result
