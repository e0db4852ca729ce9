"""The Zoho client against the running fake: tokens, checks, retries and errors."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from storeloop.core.errors import TerminalError, TransientError
from storeloop.integrations.zoho.auth import CachedToken, MemoryTokenStore
from storeloop.integrations.zoho.client import ZohoClient
from storeloop.integrations.zoho.errors import (
    ZohoAuthError,
    ZohoAuthRevoked,
    ZohoRateLimited,
    ZohoSetupError,
    ZohoTransientError,
)
from storeloop.integrations.zoho.fake import ORDER_REF, FakeZoho
from storeloop.integrations.zoho.models import ContactRecord, DealRecord

from .conftest import MakeClient, RecordingLimiter


def api_calls(zoho: FakeZoho) -> list[tuple[str, str, int]]:
    return [(r.method, r.path, r.status) for r in zoho.api_requests()]


def deal(ref: str, amount: str = "10.00") -> DealRecord:
    return DealRecord.build(ref, deal_name=f"Order {ref}", amount=amount, stage="Closed Won", closing_date="2025-03-01")


# --- tokens ------------------------------------------------------------------------------------------


def test_first_call_refreshes_and_caches(zoho: FakeZoho, make_client: MakeClient, store: MemoryTokenStore) -> None:
    client = make_client()
    client.check()
    client.check()
    assert zoho.refresh_count == 1
    cached = store.load()
    assert cached is not None
    assert cached.api_domain == zoho.api_url
    assert store.saves == 1
    # A second client (another worker) sharing the store does not mint another token.
    make_client().get_org()
    assert zoho.refresh_count == 1


def test_separate_stores_each_refresh(zoho: FakeZoho, make_client: MakeClient) -> None:
    make_client(token_store=MemoryTokenStore()).get_org()
    make_client(token_store=MemoryTokenStore()).get_org()
    assert zoho.refresh_count == 2


def test_token_api_domain_is_used_without_explicit_api_url(zoho: FakeZoho, make_client: MakeClient) -> None:
    client = make_client(api_url=None, dc="eu")
    assert client.api_url == "https://www.zohoapis.eu"  # nothing cached yet
    client.get_org()  # works only because the fake's answer carries its own api_domain
    assert client.api_url == zoho.api_url


def test_expired_access_token_refreshes_once_and_repeats_the_call(
    zoho: FakeZoho, client: ZohoClient, sleeps: list[float]
) -> None:
    client.get_org()
    zoho.clear_requests()
    zoho.expire_access_tokens()
    client.get_org()
    assert zoho.refresh_count == 2
    assert [(r.method, r.path, r.status) for r in zoho.requests] == [
        ("GET", "/crm/v8/org", 401),
        ("POST", "/oauth/v2/token", 200),
        ("GET", "/crm/v8/org", 200),
    ]
    assert sleeps == []  # a refresh is not a back-off


def test_token_expiring_within_a_minute_is_refreshed_before_the_call(
    zoho: FakeZoho, make_client: MakeClient, store: MemoryTokenStore
) -> None:
    make_client().get_org()
    cached = store.load()
    assert cached is not None
    store.save(CachedToken(cached.access_token, cached.api_domain, cached.expires_at - 3550))
    zoho.clear_requests()
    make_client().get_org()
    assert [r.path for r in zoho.requests] == ["/oauth/v2/token", "/crm/v8/org"]


def test_revoked_refresh_token_raises_before_any_api_call(zoho: FakeZoho, client: ZohoClient) -> None:
    zoho.revoke_refresh_token()
    with pytest.raises(ZohoAuthRevoked) as caught:
        client.upsert_deals([deal("s1-1")])
    assert isinstance(caught.value, TerminalError)
    assert caught.value.code == "invalid_code"
    assert zoho.api_requests() == []
    assert zoho.records("Deals") == []


def test_revocation_after_caching_also_ends_in_revoked(zoho: FakeZoho, client: ZohoClient) -> None:
    client.get_org()
    zoho.revoke_refresh_token()  # kills the live access tokens too
    with pytest.raises(ZohoAuthRevoked):
        client.get_org()
    assert api_calls(zoho)[-1] == ("GET", "/crm/v8/org", 401)


def test_wrong_client_secret_is_revoked_credentials(zoho: FakeZoho, make_client: MakeClient) -> None:
    with pytest.raises(ZohoAuthRevoked) as caught:
        make_client(client_secret="wrong").get_org()
    assert caught.value.code == "invalid_client"


def test_still_401_after_a_refresh_is_an_auth_error(store: MemoryTokenStore) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/oauth/v2/token":
            return httpx.Response(200, json={"access_token": f"t{len(calls)}", "expires_in": 3600})
        body = {"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"}
        return httpx.Response(401, json=body)

    with (
        ZohoClient(
            client_id="i",
            client_secret="s",
            refresh_token="r",
            api_url="https://zoho.test",
            token_store=store,
            transport=httpx.MockTransport(handler),
            sleep=lambda _: None,
        ) as client,
        pytest.raises(ZohoAuthError),
    ):
        client.get_org()
    assert calls == ["/oauth/v2/token", "/crm/v8/org", "/oauth/v2/token", "/crm/v8/org"]


def test_scope_mismatch_is_terminal_without_refresh(store: MemoryTokenStore) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/v2/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        body = {"code": "OAUTH_SCOPE_MISMATCH", "details": {}, "message": "Unauthorized", "status": "error"}
        return httpx.Response(401, json=body)

    with (
        ZohoClient(
            client_id="i",
            client_secret="s",
            refresh_token="r",
            api_url="https://zoho.test",
            token_store=store,
            transport=httpx.MockTransport(handler),
        ) as client,
        pytest.raises(ZohoAuthError) as caught,
    ):
        client.get_org()
    assert caught.value.code == "OAUTH_SCOPE_MISMATCH"
    assert store.saves == 1


def test_refresh_throttle_surfaces_as_rate_limited(zoho: FakeZoho, make_client: MakeClient) -> None:
    zoho.faults.token_mint_limit = 2
    make_client(token_store=MemoryTokenStore()).get_org()
    make_client(token_store=MemoryTokenStore()).get_org()
    with pytest.raises(ZohoRateLimited) as caught:
        make_client(token_store=MemoryTokenStore()).get_org()
    assert caught.value.retry_after == 60.0


def test_token_endpoint_5xx_is_retried(zoho: FakeZoho, client: ZohoClient, sleeps: list[float]) -> None:
    zoho.faults.token_fail_next = 2
    client.get_org()
    assert len(sleeps) == 2
    assert zoho.refresh_count == 1


# --- check / setup -----------------------------------------------------------------------------------


def test_check_passes_on_a_set_up_org(zoho: FakeZoho, client: ZohoClient) -> None:
    client.check(modules=("Contacts", "Deals", "Sales_Orders", "Products"))
    paths = [r.path for r in zoho.api_requests()]
    assert paths == ["/crm/v8/org"] + ["/crm/v8/settings/fields"] * 3


def test_check_names_the_missing_unique_field(zoho: FakeZoho, client: ZohoClient) -> None:
    zoho.remove_field("Deals", ORDER_REF)
    with pytest.raises(ZohoSetupError) as caught:
        client.check()
    assert caught.value.code == "FIELD_MISSING"
    assert "Storeloop_Order_Ref" in str(caught.value)
    assert "Deals" in str(caught.value)


def test_check_rejects_a_field_that_allows_duplicates(zoho: FakeZoho, client: ZohoClient) -> None:
    zoho.set_field_unique("Products", "Product_Code", False)
    with pytest.raises(ZohoSetupError) as caught:
        client.check(modules=("Products",))
    assert caught.value.code == "FIELD_NOT_UNIQUE"


def test_upsert_without_the_unique_field_is_a_setup_error(zoho: FakeZoho, client: ZohoClient) -> None:
    zoho.remove_field("Deals", ORDER_REF)
    with pytest.raises(ZohoSetupError):
        client.upsert_deals([deal("s1-1")])
    assert zoho.records("Deals") == []


def test_ensure_fields_creates_the_unique_field(zoho: FakeZoho, client: ZohoClient) -> None:
    zoho.remove_field("Deals", ORDER_REF)
    assert client.ensure_fields() == ["Deals.Storeloop_Order_Ref"]
    assert client.ensure_fields() == []  # second run: nothing to do
    client.check(modules=("Deals", "Sales_Orders"))
    assert client.upsert_deals([deal("s1-1")])[0].ok


def test_unsupported_module_is_a_programming_error(client: ZohoClient) -> None:
    with pytest.raises(ValueError, match="unsupported module"):
        client.check(modules=("Leads",))


# --- retries -----------------------------------------------------------------------------------------


def test_5xx_is_retried_then_succeeds(zoho: FakeZoho, client: ZohoClient, sleeps: list[float]) -> None:
    zoho.faults.fail_next = 2  # 503 from the proxy, twice
    assert client.upsert_deals([deal("s1-1")])[0].ok
    statuses = [s for _, _, s in api_calls(zoho)]
    assert statuses == [503, 503, 200]
    assert len(sleeps) == 2
    assert all(0 <= s <= 0.05 for s in sleeps)


def test_5xx_is_retried_then_raised(zoho: FakeZoho, client: ZohoClient) -> None:
    zoho.faults.update({"fail_next": 10, "fail_next_status": 500})
    with pytest.raises(ZohoTransientError) as caught:
        client.upsert_deals([deal("s1-1")])
    assert isinstance(caught.value, TransientError)
    assert caught.value.code == "INTERNAL_ERROR"
    assert len(api_calls(zoho)) == 3  # max_retries=2


def test_429_is_retried_then_raised_and_the_limiter_is_told(zoho: FakeZoho, make_client: MakeClient) -> None:
    limiter = RecordingLimiter()
    client = make_client(limiter=limiter)
    client.get_org()
    zoho.faults.rate_limit = 1  # the minute's budget is spent
    with pytest.raises(ZohoRateLimited) as caught:
        client.upsert_deals([deal("s1-1")])
    assert caught.value.status == 429
    assert caught.value.retry_after is not None  # from the body's details.retry_after
    assert caught.value.retry_after > 0
    assert [s for _, _, s in api_calls(zoho)] == [200, 429, 429, 429]
    assert limiter.acquired == 4  # one per API request, none for the token refresh
    assert len(limiter.penalties) == 3


def test_429_then_success(zoho: FakeZoho, client: ZohoClient) -> None:
    zoho.faults.update({"fail_next": 1, "fail_next_status": 429})
    assert client.upsert_contacts([ContactRecord.build("a@example.com")])[0].ok


def test_lost_answer_is_retried_without_creating_a_duplicate(zoho: FakeZoho, client: ZohoClient) -> None:
    zoho.faults.drop_next = 1  # Zoho wrote the record, the answer never arrived
    outcomes = client.upsert_deals([deal("s1-1"), deal("s1-2")])
    assert [(o.key, o.ok, o.created) for o in outcomes] == [("s1-1", True, False), ("s1-2", True, False)]
    assert [s for _, _, s in api_calls(zoho)] == [0, 200]
    assert len(zoho.records("Deals")) == 2
    assert zoho.duplicates() == 0


def test_connection_refused_is_transient(zoho: FakeZoho, make_client: MakeClient, sleeps: list[float]) -> None:
    client = make_client()
    client.get_org()
    client_on_dead_port = make_client(api_url="http://127.0.0.1:9")
    with pytest.raises(ZohoTransientError) as caught:
        client_on_dead_port.get_org()
    assert caught.value.code == "connection_error"


def test_logs_hold_no_tokens_secrets_or_emails(
    zoho: FakeZoho, client: ZohoClient, caplog: pytest.LogCaptureFixture, store: MemoryTokenStore
) -> None:
    caplog.set_level(logging.DEBUG)
    zoho.faults.fail_next = 1
    client.upsert_contacts([ContactRecord.build("Private.Person@example.com", last_name="Secretname")])
    zoho.expire_access_tokens()
    client.get_org()
    cached = store.load()
    assert cached is not None
    text = caplog.text + repr(client) + repr(store)
    for secret in ("zsecret", "1000.refresh", cached.access_token, "private.person", "Secretname"):
        assert secret.lower() not in text.lower()
    assert "zoho Contacts upsert: 1 records, 1 inserted" in caplog.text


def test_get_record_and_missing_record(zoho: FakeZoho, client: ZohoClient) -> None:
    outcome = client.upsert_deals([deal("s1-9", "99.90")])[0]
    assert outcome.remote_id is not None
    record: dict[str, Any] | None = client.get_record("Deals", outcome.remote_id)
    assert record is not None
    assert (record["Amount"], record[ORDER_REF], record["Stage"]) == (99.9, "s1-9", "Closed Won")
    assert client.get_record("Deals", "4150868000999999999") is None
    with pytest.raises(ValueError, match="numeric"):
        client.get_record("Deals", "../org")
