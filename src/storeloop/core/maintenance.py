"""Housekeeping tasks run by the scheduler."""

from __future__ import annotations

from django.conf import settings

from storeloop.core.tasks import durable_task
from storeloop.core.tasks.health import prune_finished_tasks
from storeloop.core.tasks.scheduler import prune_schedule_history


@durable_task(queue="maintenance", max_attempts=3)
def prune_task_rows() -> dict[str, int]:
    return {
        "task_rows": prune_finished_tasks(settings.TASK_RESULT_RETENTION_DAYS),
        "schedule_rows": prune_schedule_history(),
    }
