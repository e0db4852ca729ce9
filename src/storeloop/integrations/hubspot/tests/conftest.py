from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest

from storeloop.integrations.hubspot.client import HubSpotClient
from storeloop.integrations.hubspot.fake import FakeHubSpot


class RecordingLimiter:
    """A ``RateLimiter`` that grants everything and records what it was told."""

    def __init__(self) -> None:
        self.acquired = 0
        self.penalties: list[float] = []

    def acquire(self, cost: int = 1) -> None:
        self.acquired += cost

    def penalize(self, seconds: float) -> None:
        self.penalties.append(seconds)


@pytest.fixture
def hub() -> Iterator[FakeHubSpot]:
    with FakeHubSpot(seed=3) as started:
        yield started


@pytest.fixture
def sleeps() -> list[float]:
    """Delays the client asked for (recorded instead of slept)."""
    return []


@pytest.fixture
def limiter() -> RecordingLimiter:
    return RecordingLimiter()


@pytest.fixture
def client(hub: FakeHubSpot, sleeps: list[float], limiter: RecordingLimiter) -> Iterator[HubSpotClient]:
    with HubSpotClient(
        hub.token,
        base_url=hub.url,
        limiter=limiter,
        timeout=httpx.Timeout(2.0),
        max_retries=2,
        sleep=sleeps.append,
        backoff_base=0.01,
        backoff_max=0.05,
        rng=random.Random(0),
    ) as c:
        yield c


@pytest.fixture
def ready(client: HubSpotClient, hub: FakeHubSpot) -> HubSpotClient:
    """The client after ``ensure_properties`` (the fake rejects unknown properties, like HubSpot)."""
    client.ensure_properties()
    hub.clear_requests()
    return client
