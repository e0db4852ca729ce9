"""A sliding-window rate limiter in the database, shared by every worker process and machine.

HubSpot's budget (190 requests per 10 s) belongs to the account, not to a process: several
workers syncing several stores of one account must share it. Each grant is a row; a grant is
taken inside a transaction that locks the bucket row (PostgreSQL ``SELECT … FOR UPDATE``; SQLite
serialises writers anyway), so two processes can never both take the last slot. A 429 seen by
anyone blocks the whole bucket until its ``Retry-After`` has passed.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from storeloop.core.models import RateLimitBucket, RateLimitEvent


class DatabaseRateLimiter:
    def __init__(
        self,
        key: str,
        limit: int,
        window_seconds: float,
        *,
        max_wait_seconds: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.key = key[:200]
        self.limit = limit
        self.window = dt.timedelta(seconds=window_seconds)
        self.max_wait = max_wait_seconds
        self._sleep = sleep
        RateLimitBucket.objects.get_or_create(key=self.key)

    def _try(self, cost: int) -> float:
        """Take ``cost`` slots now if free; otherwise return how long to wait (seconds)."""
        with transaction.atomic():
            bucket = RateLimitBucket.objects.select_for_update().get(key=self.key)
            now = timezone.now()
            if bucket.blocked_until and bucket.blocked_until > now:
                return (bucket.blocked_until - now).total_seconds()
            since = now - self.window
            RateLimitEvent.objects.filter(bucket=bucket, at__lte=since).delete()
            recent = list(
                RateLimitEvent.objects.filter(bucket=bucket).order_by("at").values_list("at", flat=True)[: self.limit]
            )
            if len(recent) + cost <= self.limit:
                RateLimitEvent.objects.bulk_create([RateLimitEvent(bucket=bucket, at=now) for _ in range(cost)])
                return 0.0
            oldest = recent[len(recent) + cost - self.limit - 1]
            return max((oldest + self.window - now).total_seconds(), 0.001)

    def acquire(self, cost: int = 1) -> None:
        if cost > self.limit:
            raise ValueError(f"a request of {cost} can never fit a budget of {self.limit}")
        waited = 0.0
        while True:
            wait = self._try(cost)
            if wait <= 0:
                return
            if waited + wait > self.max_wait:
                from storeloop.core.errors import TransientError

                raise TransientError(f"rate budget {self.key} busy for {wait:.1f}s more", retry_after=wait)
            self._sleep(wait)
            waited += wait

    def penalize(self, seconds: float) -> None:
        until = timezone.now() + dt.timedelta(seconds=seconds)
        with transaction.atomic():
            bucket = RateLimitBucket.objects.select_for_update().get(key=self.key)
            if bucket.blocked_until is None or bucket.blocked_until < until:
                bucket.blocked_until = until
                bucket.save(update_fields=["blocked_until"])
