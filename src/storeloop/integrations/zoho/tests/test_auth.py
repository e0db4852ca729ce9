"""Data centres, token-endpoint answers, and when the token manager refreshes."""

from __future__ import annotations

import pytest

from storeloop.core.errors import TerminalError, TransientError
from storeloop.integrations.zoho.auth import (
    ZOHO_DATA_CENTERS,
    CachedToken,
    MemoryTokenStore,
    TokenManager,
    parse_token_response,
    resolve_data_center,
)
from storeloop.integrations.zoho.client import ZohoClient
from storeloop.integrations.zoho.errors import (
    ZohoAuthError,
    ZohoAuthRevoked,
    ZohoPayloadError,
    ZohoRateLimited,
    ZohoTransientError,
)

DEFAULT = "https://www.zohoapis.com"


@pytest.mark.parametrize(
    ("dc", "accounts", "api"),
    [
        ("com", "https://accounts.zoho.com", "https://www.zohoapis.com"),
        ("eu", "https://accounts.zoho.eu", "https://www.zohoapis.eu"),
        ("in", "https://accounts.zoho.in", "https://www.zohoapis.in"),
        ("com.au", "https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
        ("jp", "https://accounts.zoho.jp", "https://www.zohoapis.jp"),
        ("ca", "https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
        ("cn", "https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
        ("sa", "https://accounts.zoho.sa", "https://www.zohoapis.sa"),
    ],
)
def test_data_centre_urls(dc: str, accounts: str, api: str) -> None:
    assert ZOHO_DATA_CENTERS[dc] == (accounts, api)
    assert resolve_data_center(dc.upper()) == (accounts, api)
    with ZohoClient(client_id="i", client_secret="s", refresh_token="r", dc=dc) as client:
        assert client.accounts_url == accounts
        assert client.api_url == api


def test_data_centre_aliases_and_overrides() -> None:
    assert resolve_data_center("us") == ZOHO_DATA_CENTERS["com"]
    assert resolve_data_center("au") == ZOHO_DATA_CENTERS["com.au"]
    with pytest.raises(ValueError, match="unknown Zoho data centre"):
        resolve_data_center("mars")
    with ZohoClient(
        client_id="i",
        client_secret="s",
        refresh_token="r",
        dc="eu",
        accounts_url="http://127.0.0.1:9/",
        api_url="http://127.0.0.1:10/",
    ) as client:
        assert client.accounts_url == "http://127.0.0.1:9"
        assert client.api_url == "http://127.0.0.1:10"


def test_success_answer_uses_seconds_and_api_domain() -> None:
    payload = {
        "access_token": "1000.a.b",
        "api_domain": "https://www.zohoapis.eu",
        "token_type": "Bearer",
        "expires_in": 3600,
    }
    token = parse_token_response(200, payload, default_api_domain=DEFAULT, now=1000.0)
    assert token == CachedToken("1000.a.b", "https://www.zohoapis.eu", 4600.0)
    assert "1000.a.b" not in repr(token)


def test_legacy_answer_with_expires_in_sec_is_milliseconds() -> None:
    payload = {"access_token": "t", "expires_in_sec": 3600, "expires_in": 3600000}
    token = parse_token_response(200, payload, default_api_domain=DEFAULT, now=0.0)
    assert token.expires_at == 3600.0
    assert token.api_domain == DEFAULT  # no api_domain in the answer


@pytest.mark.parametrize(
    ("status", "payload"),
    [
        (200, {"error": "invalid_code"}),
        (200, {"error": "invalid_client"}),
        (200, {"error": "invalid_client_secret"}),
        (400, {"error": "invalid_grant"}),
        (400, {"error": "something_new"}),
        (400, None),
    ],
)
def test_revoked_or_invalid_grant_is_terminal(status: int, payload: object) -> None:
    with pytest.raises(ZohoAuthRevoked) as caught:
        parse_token_response(status, payload, default_api_domain=DEFAULT)
    assert isinstance(caught.value, TerminalError)


def test_refresh_throttle_is_a_wait_not_a_revocation() -> None:
    payload = {"error": "Access Denied", "error_description": "too many requests", "status": "failure"}
    with pytest.raises(ZohoRateLimited) as caught:
        parse_token_response(200, payload, default_api_domain=DEFAULT)
    assert isinstance(caught.value, TransientError)
    assert caught.value.retry_after == 60.0


def test_other_token_failures() -> None:
    with pytest.raises(ZohoTransientError):
        parse_token_response(503, None, default_api_domain=DEFAULT)
    with pytest.raises(ZohoAuthError):
        parse_token_response(200, {"error": "invalid_scope"}, default_api_domain=DEFAULT)
    with pytest.raises(ZohoPayloadError):
        parse_token_response(200, None, default_api_domain=DEFAULT)


class Minter:
    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.calls = 0

    def __call__(self) -> CachedToken:
        self.calls += 1
        return CachedToken(f"token-{self.calls}", DEFAULT, self.clock[0] + 3600)


def test_manager_refreshes_only_when_missing_or_expiring() -> None:
    clock = [0.0]
    minter = Minter(clock)
    store = MemoryTokenStore()
    manager = TokenManager(store, minter, clock=lambda: clock[0])
    assert manager.token().access_token == "token-1"
    clock[0] = 3500.0  # 100 s left: still good
    assert manager.token().access_token == "token-1"
    clock[0] = 3545.0  # 55 s left: inside the 60 s skew
    assert manager.token().access_token == "token-2"
    assert (minter.calls, manager.refresh_count, store.saves) == (2, 2, 2)


def test_manager_after_401_reuses_a_token_another_worker_saved() -> None:
    clock = [0.0]
    minter = Minter(clock)
    store = MemoryTokenStore()
    manager = TokenManager(store, minter, clock=lambda: clock[0])
    first = manager.token()
    store.save(CachedToken("from-other-worker", DEFAULT, 3600.0))
    assert manager.token(stale=first.access_token).access_token == "from-other-worker"
    assert minter.calls == 1
    assert manager.token(stale="from-other-worker").access_token == "token-2"
