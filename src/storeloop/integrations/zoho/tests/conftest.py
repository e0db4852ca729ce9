from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from storeloop.integrations.zoho.auth import MemoryTokenStore
from storeloop.integrations.zoho.client import ZohoClient
from storeloop.integrations.zoho.fake import FakeZoho

MakeClient = Callable[..., ZohoClient]


class RecordingLimiter:
    """A RateLimiter that never blocks and remembers what it was told."""

    def __init__(self) -> None:
        self.acquired = 0
        self.penalties: list[float] = []

    def acquire(self, cost: int = 1) -> None:
        self.acquired += cost

    def penalize(self, seconds: float) -> None:
        self.penalties.append(seconds)


@pytest.fixture
def zoho() -> Iterator[FakeZoho]:
    with FakeZoho(seed=3) as started:
        yield started


@pytest.fixture
def sleeps() -> list[float]:
    """Back-off delays the client asked for (recorded instead of slept)."""
    return []


@pytest.fixture
def store() -> MemoryTokenStore:
    return MemoryTokenStore()


@pytest.fixture
def make_client(zoho: FakeZoho, sleeps: list[float], store: MemoryTokenStore) -> Iterator[MakeClient]:
    made: list[ZohoClient] = []

    def make(**overrides: Any) -> ZohoClient:
        options: dict[str, Any] = {
            "client_id": "zid",
            "client_secret": "zsecret",
            "refresh_token": "1000.refresh",
            "accounts_url": zoho.accounts_url,
            "api_url": zoho.api_url,
            "token_store": store,
            "timeout": httpx.Timeout(5.0),
            "max_retries": 2,
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            "sleep": sleeps.append,
            "rng": random.Random(0),
        }
        options.update(overrides)
        client = ZohoClient(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> ZohoClient:
    return make_client()
