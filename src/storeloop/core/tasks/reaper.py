"""Hands the work of dead workers back to the queue."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from storeloop.core.models import TaskLease
from storeloop.core.tasks.registry import policy_for

logger = logging.getLogger("storeloop.reaper")


def reap_expired_leases(*, batch: int = 500) -> int:
    """Return tasks whose lease expired to READY (or dead-letter them when out of attempts).

    Also catches RUNNING rows with no lease at all (claimed by a plain ``db_worker``, or left by a
    worker killed mid-claim on a backend without transactional DDL), once they are older than two
    lease lengths. Returns how many tasks were handed back or failed.
    """
    now = timezone.now()
    reaped = 0
    expired = list(TaskLease.objects.filter(expires_at__lt=now).values_list("task_id", "token")[:batch])
    for task_id, token in expired:
        with transaction.atomic():
            # Deleting by token is the fence: a lease renewed meanwhile has the same token but a
            # new expiry, so re-check the expiry inside the delete.
            gone, _ = TaskLease.objects.filter(task_id=task_id, token=token, expires_at__lt=now).delete()
            if gone:
                reaped += _hand_back(task_id, now, "worker lease expired")
    stale_before = now - dt.timedelta(seconds=2 * settings.TASK_LEASE_SECONDS)
    leased = TaskLease.objects.values("task_id")
    orphans = list(
        DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING, started_at__lt=stale_before)
        .exclude(id__in=leased)
        .values_list("id", flat=True)[:batch]
    )
    for task_id in orphans:
        with transaction.atomic():
            reaped += _hand_back(task_id, now, "running without a lease")
    if reaped:
        logger.warning("reaper handed back %d task(s) of dead workers", reaped)
    return reaped


def _hand_back(task_id: object, now: dt.datetime, reason: str) -> int:
    row = DBTaskResult.objects.filter(id=task_id, status=TaskResultStatus.RUNNING).first()
    if row is None:
        return 0
    policy = policy_for(row.task_path)
    if len(row.worker_ids) >= policy.max_attempts:
        failed: int = DBTaskResult.objects.filter(id=task_id, status=TaskResultStatus.RUNNING).update(
            status=TaskResultStatus.FAILED,
            finished_at=now,
            exception_class_path="storeloop.core.tasks.reaper.WorkerLost",
            traceback=f"{reason}; no attempts left",
        )
        return failed
    requeued: int = DBTaskResult.objects.filter(id=task_id, status=TaskResultStatus.RUNNING).update(
        status=TaskResultStatus.READY, run_after=now
    )
    return requeued
