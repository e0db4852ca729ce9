"""The interactive API docs render in a browser, from our own server alone."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

pytestmark = pytest.mark.django_db(transaction=True)


def test_swagger_ui_shows_the_api_from_our_own_server(page: Page, live_server: Any) -> None:
    requested: list[str] = []

    def record(request: Request) -> None:
        requested.append(request.url)

    def elsewhere() -> list[str]:
        return [url for url in requested if not url.startswith(f"{live_server.url}/")]

    page.on("request", record)
    page.goto("/api/v1/docs")
    # Self-hosted servers often have no way out (and may send a strict CSP): the docs page must load
    # Swagger UI from our static files, not from a CDN.
    assert elsewhere() == []
    expect(page.locator("#swagger-ui").get_by_role("heading", level=1)).to_contain_text("Storeloop API")
    expect(page.locator('.opblock-summary-path[data-path="/api/v1/orders/{order_id}"]').first).to_be_visible()
    assert f"{live_server.url}/api/v1/openapi.json" in requested
    assert elsewhere() == []
