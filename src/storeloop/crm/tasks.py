from __future__ import annotations

from storeloop.core.tasks import durable_task


@durable_task(queue="sync", max_attempts=10, retry_base_seconds=10, retry_max_seconds=600)
def drain_crm_connection(connection_id: str) -> dict[str, int]:
    """Push every due sync record of one connection. Safe to run twice: records are claimed and
    every CRM write is an upsert by a unique key."""
    from storeloop.crm.services import drain_connection

    return dict(drain_connection(int(connection_id)))


@durable_task(queue="maintenance", max_attempts=3)
def schedule_due_crm_retries() -> int:
    """Queue a drain for every connection with failed records whose retry time has come."""
    from django.db import transaction
    from django.utils import timezone

    from storeloop.core.tasks import enqueue_on_commit
    from storeloop.crm.models import CrmConnection, CrmSyncRecord

    due = CrmSyncRecord.objects.filter(
        state__in=[CrmSyncRecord.State.FAILED, CrmSyncRecord.State.PENDING],
        connection__status=CrmConnection.Status.ACTIVE,
    ).exclude(next_attempt_at__gt=timezone.now())
    ids = set(due.values_list("connection_id", flat=True).distinct())
    with transaction.atomic():
        # Enqueued regardless of ``drain_scheduled``: this also revives a connection whose queued
        # drain was lost (e.g. dead-lettered). Drains claim records, so an extra one is harmless.
        CrmConnection.objects.filter(pk__in=ids).update(drain_scheduled=True)
        for connection_id in ids:
            enqueue_on_commit(drain_crm_connection, str(connection_id))
    return len(ids)
