"""The shared limiter keeps bursts within HubSpot's rolling window."""

from __future__ import annotations

import bisect

import httpx

from storeloop.core.ports import SlidingWindowLimiter
from storeloop.integrations.hubspot.client import HubSpotClient
from storeloop.integrations.hubspot.fake import FakeHubSpot


class VirtualClock:
    """``time.monotonic`` / ``time.sleep`` stand-ins: sleeping only moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def max_in_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered))


class StampingLimiter(SlidingWindowLimiter):
    def __init__(self, limit: int, window: float, clock: VirtualClock) -> None:
        super().__init__(limit, window, clock=clock, sleep=clock.sleep)
        self.clock = clock
        self.granted: list[float] = []

    def acquire(self, cost: int = 1) -> None:
        super().acquire(cost)
        self.granted.append(self.clock())


def test_burst_of_300_stays_within_190_per_10_seconds() -> None:
    clock = VirtualClock()
    limiter = StampingLimiter(190, 10.0, clock)
    with (
        FakeHubSpot(rate_limit=10_000) as hub,  # the fake's window runs on wall time: keep it out of the way
        HubSpotClient(hub.token, base_url=hub.url, limiter=limiter, timeout=httpx.Timeout(2.0)) as client,
    ):
        for _ in range(300):
            client.check_token()
        assert hub.count_429 == 0
        assert hub.request_count == 300
    assert len(limiter.granted) == 300
    assert max_in_window(limiter.granted, 10.0) == 190
    assert limiter.granted[-1] - limiter.granted[0] >= 10.0  # the 191st request waited for the window


def test_limiter_prevents_429s_against_a_real_window() -> None:
    # 20 requests / 1 s at the fake; the limiter keeps a 10 % margin for network jitter.
    limiter = SlidingWindowLimiter(18, 1.0)
    with (
        FakeHubSpot(rate_limit=20, window_seconds=1.0) as hub,
        HubSpotClient(hub.token, base_url=hub.url, limiter=limiter, timeout=httpx.Timeout(2.0)) as client,
    ):
        for _ in range(40):
            client.check_token()
        assert hub.count_429 == 0
        times = [r.at for r in hub.requests]
    assert max_in_window(times, 1.0) <= 20
