"""Shared fixtures: stores, API keys, an authenticated client, the fake shop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    from django.conf import settings

    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    skip = pytest.mark.skip(reason="needs PostgreSQL (set STORELOOP_DATABASE_URL)")
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(skip)


@pytest.fixture
def make_store(db: None) -> Any:
    from storeloop.stores.models import Store

    def make(**overrides: Any) -> Store:
        fields: dict[str, Any] = {
            "name": "Test shop",
            "url": "https://shop.example",
            "consumer_key": "ck_test",
            "consumer_secret": "cs_test",
            "webhook_secret": "whsec-test",
            "manage_webhooks": False,
        }
        fields.update(overrides)
        return Store.objects.create(**fields)

    return make


@pytest.fixture
def store(make_store: Any) -> Any:
    return make_store()


@pytest.fixture
def other_store(make_store: Any) -> Any:
    return make_store(name="Other shop", url="https://other.example", webhook_secret="whsec-other")


class ApiClient:
    """A Django test client that sends one store's bearer key."""

    def __init__(self, key: str | None) -> None:
        self.client = Client()
        self.key = key

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params, headers=self._headers())

    def post(self, path: str, data: Any = None) -> Any:
        return self.client.post(path, data or {}, content_type="application/json", headers=self._headers())


@pytest.fixture
def api(store: Any) -> ApiClient:
    from storeloop.stores.services import create_api_key

    return ApiClient(create_api_key(store_id=store.pk).plaintext)


@pytest.fixture
def fake_shop() -> Iterator[Any]:
    from storeloop.integrations.woocommerce.fake import FakeWooShop

    shop = FakeWooShop(consumer_key="ck_test", consumer_secret="cs_test", seed=7, initial_orders=0)
    shop.start()
    try:
        yield shop
    finally:
        shop.stop()


@pytest.fixture
def sqlite_or_pg_url() -> str:
    """The database URL of the test database, for subprocesses (workers) to use."""
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings_dict['NAME']}"
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    user = settings_dict.get("USER") or "postgres"
    return f"postgres://{user}@{host}:{port}/{settings_dict['NAME']}"


@pytest.fixture(autouse=True)
def _fresh_webhook_secret_cache() -> Iterator[None]:
    from storeloop.inbox import views

    views._secrets.clear()
    yield
    views._secrets.clear()


@pytest.fixture
def api_for(db: None) -> Any:
    """An API client for any store: ``api_for(store).get(...)``."""
    from storeloop.stores.services import create_api_key

    def make(store: Any) -> ApiClient:
        return ApiClient(create_api_key(store_id=store.pk).plaintext)

    return make
