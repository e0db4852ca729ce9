"""A historical import of a store's orders, split into time slices walked by keyset."""

from __future__ import annotations

from django.db import models

from storeloop.core.models import TimeStampedModel
from storeloop.stores.models import Store


class BackfillJob(TimeStampedModel):
    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        PAUSED = "paused"
        COMPLETED = "completed"
        CANCELLED = "cancelled"
        FAILED = "failed"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="backfills")
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    since = models.DateTimeField(null=True, blank=True, help_text="Orders modified after this (empty: all)")
    until = models.DateTimeField(help_text="Upper bound, fixed at start; later changes arrive by webhook")
    total = models.PositiveIntegerField(default=0, help_text="Orders in range when the job started")
    done = models.PositiveIntegerField(default=0)
    outcomes = models.JSONField(default=dict)
    errors = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    active_seconds = models.FloatField(default=0.0, help_text="Time spent processing, for the rate")
    sync_to_crm = models.BooleanField(default=False)
    # One runner at a time: a CLI run or a worker task holds the job until its claim expires.
    runner_id = models.CharField(max_length=64, blank=True, default="")
    runner_expires_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"backfill #{self.pk} of store #{self.store_id} ({self.state})"


class BackfillSlice(models.Model):
    """One time window of a job. ``cursor`` is the checkpoint: the newest modification time of
    the last committed page; a resumed slice continues from there."""

    job = models.ForeignKey(BackfillJob, on_delete=models.CASCADE, related_name="slices")
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField()
    cursor = models.DateTimeField(null=True, blank=True)
    done = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"slice {self.start}..{self.end} of job #{self.job_id}"
