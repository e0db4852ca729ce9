"""Rate limiters in the database, shared by every worker process and machine.

``DatabaseRateLimiter`` is a sliding window for request budgets. HubSpot's budget (190 requests
per 10 s) belongs to the account, not to a process: several workers syncing several stores of one
account must share it. Each grant is a row; a grant is taken inside a transaction that locks the
bucket row (PostgreSQL ``SELECT … FOR UPDATE``; SQLite serialises writers anyway), so two
processes can never both take the last slot. A 429 seen by anyone blocks the whole bucket until
its ``Retry-After`` has passed.

``PacedRateLimiter`` paces a steady rate (a store's messages per second) for hot paths: one short
transaction hands a process a few future send times at once, instead of one per send.

``AllOf`` keeps several budgets at once: a store's own rate and the rate of the provider account
it shares with other stores.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from storeloop.core.models import RateLimitBucket, RateLimitEvent
from storeloop.core.ports import RateLimiter


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


class PacedRateLimiter:
    """At most ``per_second`` sends per second, together, by every process sharing ``key``.

    The generic cell rate algorithm: sends are given *slots*, ``1 / per_second`` apart, from one
    schedule kept in the bucket row, whose ``blocked_until`` is the next free slot. A process
    reserves ``prefetch_seconds`` worth of slots in one short transaction (at least one) and hands
    them to its threads in order; each thread sleeps until its slot. Slots of different processes
    never coincide, so the rate holds across processes as long as their clocks agree (one machine,
    or NTP). A slot a thread reaches late by more than one reservation's span or 0.1 s, whichever
    is longer, is dropped, never spent, so an idle process cannot bunch stale slots into someone
    else's: in any window of W seconds a store sends at most ``per_second * (W + that tolerance)``.
    Within the tolerance a late slot is still spent: a process sending slower than the rate would
    otherwise drop most of its slots and go back to the database for nearly every send.
    ``penalize`` (a provider's 429) moves the schedule past the wait for
    everyone.

    ``acquire`` never raises: it waits as long as the schedule says, which is what a caller that
    must not lose a send (a message whose attempt is already recorded) needs.
    """

    # Slots per reservation: ``prefetch_seconds`` worth, up to this many (at 5,000/s, 250: one
    # reservation per 50 ms of sending instead of one per 20 ms).
    MAX_PREFETCH = 500
    LATE_TOLERANCE = 0.1

    def __init__(
        self,
        key: str,
        per_second: float,
        *,
        prefetch_seconds: float = 0.05,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not per_second > 0:
            raise ValueError("per_second must be positive")
        self.key = key[:200]
        self.per_second = per_second
        self.interval = 1.0 / per_second
        self.prefetch = max(1, min(self.MAX_PREFETCH, math.floor(per_second * prefetch_seconds)))
        # How late a slot may still be spent: a reservation's span, and at least 0.1 s, so a process
        # sending well below a high rate still spends most of what it reserved.
        self.tolerance = max(self.prefetch * self.interval, self.LATE_TOLERANCE)
        self._clock = clock
        self._sleep = sleep
        self._slots: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self, cost: int = 1) -> None:
        """Wait for ``cost`` slots (the last one's time)."""
        last = 0.0
        for _ in range(max(cost, 1)):
            last = self._take_slot()
        wait = last - self._clock()
        if wait > 0:
            self._sleep(wait)

    def penalize(self, seconds: float) -> None:
        until = _at(self._clock() + seconds)
        with self._lock:
            self._slots.clear()
            with transaction.atomic():
                bucket, _ = RateLimitBucket.objects.select_for_update().get_or_create(key=self.key)
                if bucket.blocked_until is None or bucket.blocked_until < until:
                    bucket.blocked_until = until
                    bucket.save(update_fields=["blocked_until"])

    def _take_slot(self) -> float:
        with self._lock:
            now = self._clock()
            while self._slots and self._slots[0] < now - self.tolerance:
                self._slots.popleft()
            if not self._slots:
                self._slots.extend(self._reserve(now))
            return self._slots.popleft()

    def _reserve(self, now: float) -> list[float]:
        # Two plain statements in one short transaction (the row locked on PostgreSQL; SQLite
        # serialises writers): this runs once per ``prefetch`` sends of every sending thread.
        buckets = RateLimitBucket.objects.filter(key=self.key)
        with transaction.atomic():
            blocked = buckets.select_for_update().values_list("blocked_until", flat=True).first()
            if blocked is None:  # no reservation yet, perhaps no row yet
                RateLimitBucket.objects.get_or_create(key=self.key)
            start = max(now, blocked.timestamp() if blocked else now)
            buckets.update(blocked_until=_at(start + self.prefetch * self.interval))
        return [start + i * self.interval for i in range(self.prefetch)]


def _at(epoch_seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_seconds, tz=dt.UTC)


class AllOf:
    """Several budgets at once, e.g. a provider account's rate shared by the stores that send
    through it, and each store's own. ``acquire`` waits for a slot of each, in the order given (the
    shared, scarcer one first: the next one's slot is then taken when the send is really due);
    ``penalize`` (a provider's 429) moves every one of them back."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("AllOf needs at least one limiter")
        self.limiters = limiters

    def acquire(self, cost: int = 1) -> None:
        for limiter in self.limiters:
            limiter.acquire(cost)

    def penalize(self, seconds: float) -> None:
        for limiter in self.limiters:
            limiter.penalize(seconds)
