"""Work-engine state that django-tasks-db does not keep: leases and schedule runs."""

from __future__ import annotations

import uuid

from django.db import models
from django_tasks_db.models import DBTaskResult


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class TaskLease(models.Model):
    """A worker's claim on a running task row (``DBTaskResult``).

    The claim expires at ``expires_at`` unless the worker's heartbeat renews it. The completion write
    deletes the lease *by token*: a worker whose lease was reaped (and whose task was handed to
    another worker) finds no row to delete and discards its outcome. That is the fence.
    """

    task_id = models.UUIDField(primary_key=True)
    token = models.UUIDField(default=uuid.uuid4)
    worker_id = models.CharField(max_length=64)
    claimed_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"lease {self.task_id} by {self.worker_id}"


class ScheduledRun(models.Model):
    """One row per (job, time slot): the unique constraint makes a slot run at most once,
    even if two schedulers were ever alive at the same time."""

    job = models.CharField(max_length=100)
    slot = models.BigIntegerField()
    enqueued_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "slot"], name="scheduled_run_once")]

    def __str__(self) -> str:
        return f"{self.job}@{self.slot}"


class SchedulerLock(models.Model):
    """Single row naming the one active scheduler; its claim expires like a task lease."""

    name = models.CharField(max_length=50, primary_key=True)
    holder = models.CharField(max_length=64)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} held by {self.holder}"


class DeadLetter(DBTaskResult):  # type: ignore[misc]
    """Failed task rows, shown in the admin with a retry action."""

    class Meta:
        proxy = True
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters (failed tasks)"


class RateLimitBucket(models.Model):
    """One outbound budget (e.g. a HubSpot account), shared by every process that uses it."""

    key = models.CharField(max_length=200, primary_key=True)
    blocked_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.key


class RateLimitEvent(models.Model):
    bucket = models.ForeignKey(RateLimitBucket, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["bucket", "at"])]

    def __str__(self) -> str:
        return f"{self.bucket_id}@{self.at}"
