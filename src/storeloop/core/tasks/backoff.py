"""Retry delays: exponential back-off with full jitter, never shorter than the provider's hint."""

from __future__ import annotations

import random


def retry_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Full jitter (AWS architecture blog) spreads retries of many tasks failing together; a
    ``Retry-After`` from the provider is a floor, because retrying earlier only earns another 429.
    """
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    delay = (rng or random).uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay
