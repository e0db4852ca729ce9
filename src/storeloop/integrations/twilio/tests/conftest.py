from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from storeloop.integrations.twilio.client import TwilioClient
from storeloop.integrations.twilio.fake import FakeTwilio

from .receiver import Receiver


class RecordingLimiter:
    """A ``RateLimiter`` that grants everything and records what it was told."""

    def __init__(self) -> None:
        self.acquired = 0
        self.penalties: list[float] = []

    def acquire(self, cost: int = 1) -> None:
        self.acquired += cost

    def penalize(self, seconds: float) -> None:
        self.penalties.append(seconds)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until true or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.005)


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio(seed=3) as fake:
        yield fake


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def sleeps() -> list[float]:
    """Delays the client asked for (recorded instead of slept)."""
    return []


@pytest.fixture
def limiter() -> RecordingLimiter:
    return RecordingLimiter()


@pytest.fixture
def make_client(
    twilio: FakeTwilio, sleeps: list[float], limiter: RecordingLimiter
) -> Iterator[Callable[..., TwilioClient]]:
    clients: list[TwilioClient] = []

    def make(**overrides: object) -> TwilioClient:
        options: dict[str, object] = {
            "base_url": twilio.url,
            "from_number": twilio.from_number,
            "limiter": limiter,
            "timeout": httpx.Timeout(2.0),
            "max_retries": 2,
            "sleep": sleeps.append,
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            "rng": random.Random(0),
        }
        options.update(overrides)
        auth_token = str(options.pop("auth_token", twilio.auth_token))
        client = TwilioClient(twilio.account_sid, auth_token, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., TwilioClient]) -> TwilioClient:
    return make_client()
