from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest

from storeloop.integrations.woocommerce.client import WooCommerceClient
from storeloop.integrations.woocommerce.fake import FakeWooShop

from .receiver import Receiver


@pytest.fixture
def shop() -> Iterator[FakeWooShop]:
    with FakeWooShop(initial_orders=250, seed=7, delivery_timeout=2.0) as started:
        yield started


@pytest.fixture
def sleeps() -> list[float]:
    """Back-off delays the client asked for (recorded instead of slept)."""
    return []


@pytest.fixture
def client(shop: FakeWooShop, sleeps: list[float]) -> Iterator[WooCommerceClient]:
    with WooCommerceClient(
        shop.url,
        shop.consumer_key,
        shop.consumer_secret,
        timeout=httpx.Timeout(2.0),
        max_retries=2,
        backoff_base=0.01,
        backoff_max=0.05,
        sleep=sleeps.append,
        rng=random.Random(0),
    ) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()
