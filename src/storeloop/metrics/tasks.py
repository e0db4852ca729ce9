"""Metrics tasks: the nightly refresh (fanned out per store) and a whole-store recompute."""

from __future__ import annotations

from django.db import transaction

from storeloop.core.tasks import durable_task, enqueue_on_commit
from storeloop.metrics.services import OrderMetricsUpdater
from storeloop.stores.models import Store


@durable_task(queue="maintenance", max_attempts=3)
def refresh_store_metrics(store_id: str) -> dict[str, object]:
    """Retake the store's RFM quintiles (rescoring its contacts) and refit its CLV models.

    Safe to run twice: it rewrites the same rows from the same data.
    """
    if not Store.objects.filter(pk=int(store_id)).exists():
        return {"store_id": int(store_id), "skipped": "no such store"}
    return OrderMetricsUpdater().refresh_store_models(int(store_id)).as_dict()


@durable_task(queue="maintenance", max_attempts=3)
def refresh_all_store_metrics() -> int:
    """Fan out one ``refresh_store_metrics`` per store (the scheduler's nightly job)."""
    ids = list(Store.objects.values_list("pk", flat=True))
    with transaction.atomic():
        for store_id in ids:
            enqueue_on_commit(refresh_store_metrics, str(store_id))
    return len(ids)


@durable_task(queue="maintenance", max_attempts=3)
def recalculate_store_metrics(store_id: str) -> dict[str, object]:
    """Recompute every metric of a store from its orders, then refresh RFM and CLV (after a backfill)."""
    if not Store.objects.filter(pk=int(store_id)).exists():
        return {"store_id": int(store_id), "skipped": "no such store"}
    updater = OrderMetricsUpdater()
    recalc = updater.recalculate_customer_metrics(int(store_id))
    refresh = updater.refresh_store_models(int(store_id))
    return {**recalc.as_dict(), "refresh": refresh.as_dict()}
