from __future__ import annotations

from storeloop.core.tasks import durable_task, enqueue_on_commit
from storeloop.orders.reconcile import reconcile_store
from storeloop.stores.models import Store


@durable_task(queue="sync", max_attempts=3)
def reconcile_store_task(store_id: str) -> dict[str, object]:
    return reconcile_store(int(store_id)).as_dict()


@durable_task(queue="maintenance", max_attempts=3)
def reconcile_all_stores() -> int:
    """Fan out one reconciliation per store (the scheduler's every-N-minutes job)."""
    from django.db import transaction

    ids = list(Store.objects.values_list("pk", flat=True))
    with transaction.atomic():
        for store_id in ids:
            enqueue_on_commit(reconcile_store_task, str(store_id))
    return len(ids)
