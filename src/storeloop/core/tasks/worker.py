"""A django-tasks-db worker with leases, retries, dead letters and a fenced completion write."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import traceback
import uuid
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.db.utils import OperationalError
from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.compat import TaskContext, task_finished, task_started
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult, get_date_max
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

from storeloop.core.errors import ApplicationError, TerminalError, TransientError
from storeloop.core.models import TaskLease
from storeloop.core.tasks.backoff import retry_delay
from storeloop.core.tasks.registry import policy_for

logger = logging.getLogger("storeloop.worker")


class LeaseHeartbeat:
    """Renews one lease every third of its length from a side thread with its own connection."""

    def __init__(self, task_id: uuid.UUID, token: uuid.UUID, lease_seconds: float) -> None:
        self.task_id = task_id
        self.token = token
        self.lease_seconds = lease_seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.lease_seconds)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.lease_seconds / 3):
                try:
                    renewed = TaskLease.objects.filter(task_id=self.task_id, token=self.token).update(
                        expires_at=timezone.now() + dt.timedelta(seconds=self.lease_seconds)
                    )
                except OperationalError:
                    continue  # a busy database: the next beat tries again well inside the lease
                if renewed == 0:
                    logger.warning("task %s: lease lost; its outcome will be discarded", self.task_id)
                    self.lost.set()
                    return
        finally:
            connections.close_all()


class LeasedWorker(Worker):  # type: ignore[misc]
    def __init__(self, *, lease_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lease_seconds = float(lease_seconds or settings.TASK_LEASE_SECONDS)

    def run(self) -> None:
        logger.info("worker %s started on queues %s", self.worker_id, ",".join(self.queue_names))
        while self.running:
            close_old_connections()
            claimed = self.claim_next()
            if claimed is not None:
                self.run_task_leased(*claimed)
            elif self.batch and claimed is None:
                return
            if self.max_tasks is not None and self._run_tasks >= self.max_tasks:
                return
            close_old_connections()
            if self.running and claimed is None:
                threading.Event().wait(self.interval)

    def claim_next(self) -> tuple[DBTaskResult, uuid.UUID] | None:
        tasks = DBTaskResult.objects.ready().filter(backend_name=self.backend_name)
        if not self.process_all_queues:
            tasks = tasks.filter(queue_name__in=self.queue_names)
        if self.excluded_queue_names:
            tasks = tasks.exclude(queue_name__in=self.excluded_queue_names)
        try:
            with exclusive_transaction(tasks.db):
                task_result = tasks.get_locked()
                if task_result is None:
                    return None
                task_result.claim(self.worker_id)
                now = timezone.now()
                lease = TaskLease.objects.create(
                    task_id=task_result.id,
                    worker_id=self.worker_id,
                    claimed_at=now,
                    expires_at=now + dt.timedelta(seconds=self.lease_seconds),
                )
                return task_result, lease.token
        except OperationalError as exc:
            if is_locked_database_exception(exc):
                return None
            raise

    def run_task_leased(self, db_task: DBTaskResult, token: uuid.UUID) -> None:
        self.running_task = True
        error: BaseException | None = None
        return_value: Any = None
        try:
            with LeaseHeartbeat(db_task.id, token, self.lease_seconds):
                try:
                    task = db_task.task
                    result = db_task.task_result
                    task_started.send(sender=type(task.get_backend()), task_result=result)
                    if task.takes_context:
                        return_value = task.call(TaskContext(task_result=result), *result.args, **result.kwargs)
                    else:
                        return_value = task.call(*result.args, **result.kwargs)
                except Exception as exc:  # every failure is recorded; BaseException (kill) is not caught
                    error = exc
            self.finish(db_task, token, return_value, error)
        finally:
            self.running_task = False
            self._run_tasks += 1

    def finish(self, db_task: DBTaskResult, token: uuid.UUID, return_value: Any, error: BaseException | None) -> None:
        """Record the outcome, fenced by the lease token: no lease, no write."""
        attempts = len(db_task.worker_ids)
        policy = policy_for(db_task.task_path)
        now = timezone.now()
        with transaction.atomic():
            fenced, _ = TaskLease.objects.filter(task_id=db_task.id, token=token).delete()
            if not fenced:
                logger.warning("task %s finished after losing its lease; outcome discarded", db_task.id)
                return
            rows = DBTaskResult.objects.filter(id=db_task.id, status=TaskResultStatus.RUNNING)
            if error is None:
                rows.update(status=TaskResultStatus.SUCCESSFUL, finished_at=now, return_value=return_value)
                outcome = "succeeded"
            else:
                retryable = not isinstance(error, TerminalError | ApplicationError)
                details = {
                    "exception_class_path": f"{type(error).__module__}.{type(error).__qualname__}",
                    "traceback": "".join(traceback.format_exception(error)),
                }
                if retryable and attempts < policy.max_attempts:
                    delay = retry_delay(
                        attempts,
                        base=policy.retry_base_seconds,
                        cap=policy.retry_max_seconds,
                        retry_after=error.retry_after if isinstance(error, TransientError) else None,
                    )
                    rows.update(status=TaskResultStatus.READY, run_after=now + dt.timedelta(seconds=delay), **details)
                    outcome = f"retry in {delay:.1f}s (attempt {attempts}/{policy.max_attempts})"
                else:
                    rows.update(status=TaskResultStatus.FAILED, finished_at=now, **details)
                    outcome = "dead letter" + ("" if retryable else " (terminal)")
        # The log names the task and the error class only: arguments are ids, messages may not be.
        logger.info(
            "task %s %s %s%s",
            db_task.task_path,
            db_task.id,
            outcome,
            f" after {type(error).__name__}" if error else "",
        )
        try:
            db_task.refresh_from_db()
            task_finished.send(sender=type(db_task.task.get_backend()), task_result=db_task.task_result)
        except Exception:  # signals are best effort, the outcome is already committed
            logger.debug("task_finished signal failed", exc_info=True)


def retry_dead_letter(task_id: str | uuid.UUID) -> bool:
    """Put a failed task back on the queue with a fresh attempt budget."""
    updated = DBTaskResult.objects.filter(id=task_id, status=TaskResultStatus.FAILED).update(
        status=TaskResultStatus.READY,
        run_after=get_date_max(),
        worker_ids=[],
        finished_at=None,
        started_at=None,
    )
    return bool(updated)
