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
    """One query per figure, each answered from a partial index (READY by the library's,
    RUNNING and FAILED by ours): the cost follows the backlog, not the history of finished tasks."""
    now = timezone.now()
    never = get_date_max()
    queued = DBTaskResult.objects.filter(status=TaskResultStatus.READY)
    due = queued.filter(Q(run_after=never) | Q(run_after__lte=now)).aggregate(n=Count("*"), oldest=Min("enqueued_at"))
    oldest = due["oldest"]
    return QueueHealth(
        ready=due["n"],
        scheduled=queued.filter(run_after__gt=now).exclude(run_after=never).count(),
        running=DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING).count(),
        failed=DBTaskResult.objects.filter(status=TaskResultStatus.FAILED).count(),
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
