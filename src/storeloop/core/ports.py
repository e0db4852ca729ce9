"""Small interfaces shared by integrations and the domain, free of Django imports."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol


class RateLimiter(Protocol):
    """Grants permission for outbound requests within a provider's budget.

    ``acquire`` blocks until ``cost`` requests may be sent now (or raises if it cannot wait that
    long). ``penalize`` tells the limiter the provider answered 429 and asked to wait ``seconds``:
    every user of the same budget backs off, not only the caller.
    """

    def acquire(self, cost: int = 1) -> None: ...

    def penalize(self, seconds: float) -> None: ...


class SlidingWindowLimiter:
    """In-process sliding window: at most ``limit`` requests in any ``window`` seconds.

    Enough for one process (tests, benchmarks, a single worker). Several processes sharing one
    account need the database-backed limiter in ``storeloop.core.ratelimit``.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._blocked_until = 0.0
        self._lock = threading.Lock()

    def acquire(self, cost: int = 1) -> None:
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                wait = self._blocked_until - now
                if wait <= 0 and len(self._sent) + cost <= self.limit:
                    self._sent.extend([now] * cost)
                    return
                if wait <= 0:
                    wait = self._sent[0] + self.window - now
            self._sleep(max(wait, 0.001))

    def penalize(self, seconds: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)
