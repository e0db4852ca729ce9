"""What happens after a backfill completes: metrics recomputed, optionally a CRM sync."""

from __future__ import annotations

import logging

from django.db import transaction

from storeloop.backfill.models import BackfillJob
from storeloop.orders.models import Order

logger = logging.getLogger("storeloop.backfill")
MARK_BATCH = 2000


def run_followup(job_id: int) -> str:
    """Recompute the store's metrics set-based, then (if asked) queue the imported orders for the
    CRMs; the drain pushes them within the account's rate budget. Safe to run twice."""
    from storeloop.crm.services import mark_orders_changed
    from storeloop.metrics.services import OrderMetricsUpdater

    job = BackfillJob.objects.filter(pk=job_id).first()
    if job is None:
        return "gone"
    updater = OrderMetricsUpdater()
    updater.recalculate_customer_metrics(job.store_id)
    updater.refresh_store_models(job.store_id)  # RFM quintiles and CLV fit over the imported history
    queued = 0
    if job.sync_to_crm:
        orders = Order.objects.filter(store_id=job.store_id, date_modified__lte=job.until)
        if job.since is not None:
            orders = orders.filter(date_modified__gt=job.since)
        ids = list(orders.order_by("pk").values_list("pk", flat=True))
        for start in range(0, len(ids), MARK_BATCH):
            with transaction.atomic():
                queued += mark_orders_changed(job.store_id, ids[start : start + MARK_BATCH])
    logger.info("backfill %s follow-up: metrics recomputed, %s orders queued for CRM sync", job_id, queued)
    return f"metrics recomputed; {queued} queued for CRM"
