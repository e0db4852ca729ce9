"""Run the real worker in-process until the queue is empty (tests only)."""

from __future__ import annotations

import uuid

from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from storeloop.core.tasks.worker import LeasedWorker


def drain(*, due_now: bool = True, rounds: int = 20) -> None:
    for _ in range(rounds):
        if due_now:
            DBTaskResult.objects.filter(status=TaskResultStatus.READY).update(run_after=timezone.now())
        LeasedWorker(
            queue_names=["*"],
            interval=0,
            batch=True,
            backend_name="default",
            startup_delay=False,
            max_tasks=None,
            worker_id=f"drain-{uuid.uuid4().hex[:8]}",
            excluded_queue_names=[],
            lease_seconds=30,
        ).run()
        if not DBTaskResult.objects.filter(status=TaskResultStatus.READY).exists():
            return
