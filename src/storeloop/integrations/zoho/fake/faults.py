"""Fault switches for the fake Zoho, read on every request so tests can flip them at runtime."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Faults:
    """Set as attributes (``zoho.faults.fail_next = 2``) or via ``POST /__fake__/faults``."""

    latency_ms: int = 0  # added to every API request
    error_rate: float = 0.0  # fraction of API requests answered 500/502/503
    fail_next: int = 0  # the next N API requests fail with fail_next_status
    fail_next_status: int = 503
    rate_limit: int = 0  # API requests per rolling minute; above it 429 TOO_MANY_REQUESTS (0 = off)
    drop_next: int = 0  # process the next N API requests, then close the socket without answering
    token_fail_next: int = 0  # the next N token-endpoint requests answer 503
    # Zoho: at most 10 access tokens per refresh token in 10 minutes, then HTTP 200 "Access Denied".
    token_mint_limit: int = 10  # 0 = unlimited
    reject_emails: set[str] = field(default_factory=set)  # Contacts with these emails get INVALID_DATA

    def update(self, values: dict[str, Any]) -> None:
        """Validate every value first, then apply them all."""
        for name, value in values.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(f"unknown fault {name!r}")
            current = getattr(self, name)
            if isinstance(current, set):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"fault {name!r} must be a list of strings")
            elif isinstance(current, int):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"fault {name!r} must be a non-negative integer")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"fault {name!r} must be a number between 0 and 1")
        for name, value in values.items():
            current = getattr(self, name)
            if isinstance(current, set):
                value = {v.strip().lower() for v in value}
            elif isinstance(current, float):
                value = float(value)
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["reject_emails"] = sorted(self.reject_emails)
        return out


class RollingWindow:
    """Timestamps of accepted events in the last ``window`` seconds (thread-safe)."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._events: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self, limit: int) -> float | None:
        """Record an event and return None, or return seconds until one is allowed (not recorded)."""
        with self._lock:
            now = self._clock()
            while self._events and self._events[0] <= now - self.window:
                self._events.popleft()
            if limit and len(self._events) >= limit:
                return max(0.0, self._events[0] + self.window - now)
            self._events.append(now)
            return None
