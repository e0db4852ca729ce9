"""Every recurring job, declared in one place. ``storeloop scheduler`` runs this list."""

from __future__ import annotations

from django.conf import settings

from storeloop.core.maintenance import prune_task_rows
from storeloop.core.tasks.reaper import reap_expired_leases
from storeloop.core.tasks.scheduler import RecurringJob
from storeloop.crm.tasks import schedule_due_crm_retries
from storeloop.inbox.tasks import prune_inbox
from storeloop.messaging.tasks import advance_campaigns, kick_dispatch, reap_stuck_messages, settle_unknown_messages
from storeloop.metrics.tasks import refresh_all_store_metrics
from storeloop.orders.tasks import reconcile_all_stores


def recurring_jobs() -> list[RecurringJob]:
    return [
        # The reaper runs inside the scheduler process: it must work when every worker is dead.
        RecurringJob(
            "reap_expired_leases",
            every_seconds=max(5, settings.TASK_LEASE_SECONDS // 4),
            inline=reap_expired_leases,
        ),
        RecurringJob(
            "reconcile_all_stores",
            every_seconds=settings.RECONCILE_INTERVAL_SECONDS,
            task=reconcile_all_stores,
        ),
        RecurringJob("prune_task_rows", every_seconds=6 * 3600, task=prune_task_rows),
        RecurringJob("prune_inbox", every_seconds=6 * 3600, task=prune_inbox),
        RecurringJob("crm_due_retries", every_seconds=60, task=schedule_due_crm_retries),
        # RFM quintiles and CLV fits are store-wide, so they are refreshed daily, not per event.
        RecurringJob("refresh_store_metrics", every_seconds=24 * 3600, task=refresh_all_store_metrics),
        # Messaging: cheap checks in the scheduler itself; the work (materialise, send) goes to workers.
        RecurringJob("advance_campaigns", every_seconds=10, inline=advance_campaigns),
        RecurringJob("dispatch_due_messages", every_seconds=5, inline=kick_dispatch),
        RecurringJob("reap_stuck_sends", every_seconds=60, task=reap_stuck_messages),
        RecurringJob("settle_unknown_sends", every_seconds=60, task=settle_unknown_messages),
    ]
