"""Recurring jobs. One scheduler is active at a time; each (job, slot) is enqueued at most once.

Jobs are declared in ``storeloop.config.schedule`` (one place). The scheduler holds a renewable
lock row; a second scheduler waits until the first one's lock expires, so a standby can take over
from a dead one. The unique ``ScheduledRun(job, slot)`` row guards against overlap even then.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, close_old_connections, transaction
from django.db.utils import OperationalError
from django.utils import timezone

from storeloop.core.models import ScheduledRun, SchedulerLock
from storeloop.core.tasks.enqueue import enqueue_on_commit

logger = logging.getLogger("storeloop.scheduler")
LOCK_NAME = "scheduler"


@dataclass(frozen=True)
class RecurringJob:
    name: str
    every_seconds: int
    task: Any | None = None  # a durable task enqueued each slot ...
    inline: Callable[[], object] | None = None  # ... or work run in the scheduler process itself


def acquire_lock(holder: str, ttl_seconds: float) -> bool:
    now = timezone.now()
    expires = now + dt.timedelta(seconds=ttl_seconds)
    with transaction.atomic():
        taken = SchedulerLock.objects.filter(name=LOCK_NAME).filter(holder=holder).update(
            expires_at=expires
        ) or SchedulerLock.objects.filter(name=LOCK_NAME, expires_at__lt=now).update(holder=holder, expires_at=expires)
        if taken:
            return True
        try:
            with transaction.atomic():
                SchedulerLock.objects.create(name=LOCK_NAME, holder=holder, expires_at=expires)
        except IntegrityError:
            return False
        return True


def release_lock(holder: str) -> None:
    SchedulerLock.objects.filter(name=LOCK_NAME, holder=holder).delete()


def run_due(jobs: Sequence[RecurringJob], now: dt.datetime | None = None) -> list[str]:
    """Enqueue (or run) every job whose current slot has not run yet; returns their names."""
    now = now or timezone.now()
    fired: list[str] = []
    for job in jobs:
        slot = int(now.timestamp()) // job.every_seconds
        try:
            with transaction.atomic():
                ScheduledRun.objects.create(job=job.name, slot=slot)
                if job.task is not None:
                    enqueue_on_commit(job.task)
        except IntegrityError:
            continue
        if job.inline is not None:
            try:
                job.inline()
            except Exception:
                logger.exception("scheduled job %s failed", job.name)
        fired.append(job.name)
    return fired


def prune_schedule_history(keep_days: int = 2) -> int:
    cutoff = timezone.now() - dt.timedelta(days=keep_days)
    deleted, _ = ScheduledRun.objects.filter(enqueued_at__lt=cutoff).delete()
    return deleted


class Scheduler:
    def __init__(self, jobs: Sequence[RecurringJob], *, tick_seconds: float = 1.0, lock_ttl: float = 15.0):
        self.jobs = list(jobs)
        self.tick_seconds = tick_seconds
        self.lock_ttl = lock_ttl
        self.holder = f"scheduler-{uuid.uuid4().hex[:12]}"
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        logger.info("scheduler %s started with %d jobs", self.holder, len(self.jobs))
        active = False
        try:
            while not self.stopping.is_set():
                close_old_connections()
                try:
                    has_lock = acquire_lock(self.holder, self.lock_ttl)
                    if has_lock != active:
                        logger.info("scheduler %s %s", self.holder, "active" if has_lock else "standby")
                        active = has_lock
                    if has_lock:
                        for name in run_due(self.jobs):
                            logger.info("scheduled %s", name)
                except OperationalError:
                    logger.warning("database busy; scheduler retries next tick")
                self.stopping.wait(self.tick_seconds)
        finally:
            try:
                release_lock(self.holder)
            finally:
                close_old_connections()
