"""Queue figures for the health view: depth, age of the oldest ready task, running, failed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Min, Q
from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult, get_date_max


@dataclass(frozen=True)
class QueueHealth:
    ready: int
    scheduled: int
    running: int
    failed: int
    oldest_ready_age_seconds: float | None


def queue_health() -> QueueHealth:
    now = timezone.now()
    due = Q(status=TaskResultStatus.READY) & (Q(run_after=get_date_max()) | Q(run_after__lte=now))
    figures = DBTaskResult.objects.aggregate(
        ready=Count("id", filter=due),
        scheduled=Count(
            "id",
            filter=Q(status=TaskResultStatus.READY) & Q(run_after__gt=now) & ~Q(run_after=get_date_max()),
        ),
        running=Count("id", filter=Q(status=TaskResultStatus.RUNNING)),
        failed=Count("id", filter=Q(status=TaskResultStatus.FAILED)),
        oldest=Min("enqueued_at", filter=due),
    )
    oldest = figures["oldest"]
    return QueueHealth(
        ready=figures["ready"],
        scheduled=figures["scheduled"],
        running=figures["running"],
        failed=figures["failed"],
        oldest_ready_age_seconds=(now - oldest).total_seconds() if oldest else None,
    )


def prune_finished_tasks(older_than_days: int) -> int:
    """Delete finished task rows (successful ones, and dead letters) past the retention age.

    Finished rows slow the claim query on SQLite (django-tasks #140), so this runs daily.
    """
    cutoff = timezone.now() - dt.timedelta(days=older_than_days)
    deleted: int = DBTaskResult.objects.filter(
        status__in=[TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED], finished_at__lt=cutoff
    ).delete()[0]
    return deleted
