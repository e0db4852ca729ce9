"""Retries, rate limits and logging hygiene of the client against the running fake."""

from __future__ import annotations

import logging
import random

import httpx
import pytest

from storeloop.core.errors import TerminalError, TransientError
from storeloop.integrations.hubspot.client import HubSpotClient
from storeloop.integrations.hubspot.errors import (
    HubSpotRateLimited,
    HubSpotTransientError,
    HubSpotValidationError,
    parse_retry_after,
    scrub,
)
from storeloop.integrations.hubspot.fake import FakeHubSpot
from storeloop.integrations.hubspot.models import ContactInput

from .conftest import RecordingLimiter


def test_429_honours_retry_after_and_penalizes_the_shared_limiter(
    hub: FakeHubSpot, client: HubSpotClient, sleeps: list[float], limiter: RecordingLimiter
) -> None:
    hub.faults.update({"fail_next": 1, "fail_next_status": 429})
    client.check_token()
    assert [r.status for r in hub.requests] == [429, 200]
    assert limiter.penalties == [1.0]  # the fake's Retry-After: 1
    assert len(sleeps) == 1
    assert 1.0 <= sleeps[0] <= 1.1
    assert limiter.acquired == 2  # every attempt asks the limiter first


def test_429_without_retry_after_waits_one_rolling_window(
    hub: FakeHubSpot, client: HubSpotClient, sleeps: list[float], limiter: RecordingLimiter
) -> None:
    hub.window_seconds = 2.0  # -> X-HubSpot-RateLimit-Interval-Milliseconds: 2000
    hub.faults.update({"fail_next": 1, "fail_next_status": 429, "retry_after": False})
    client.check_token()
    assert limiter.penalties == [2.0]
    assert 2.0 <= sleeps[0] <= 2.2


def test_real_rate_limit_is_retried_a_bounded_number_of_times(
    hub: FakeHubSpot, client: HubSpotClient, sleeps: list[float], limiter: RecordingLimiter
) -> None:
    hub.rate_limit = 2
    client.check_token()
    client.check_token()
    # The recorded sleep does not wait, so every retry meets the full window again.
    with pytest.raises(HubSpotRateLimited) as info:
        client.check_token()
    assert isinstance(info.value, TransientError)
    assert info.value.policy_name == "TEN_SECONDLY_ROLLING"
    assert info.value.retry_after is not None
    assert 1 <= info.value.retry_after <= 10
    assert [r.status for r in hub.requests] == [200, 200, 429, 429, 429]  # max_retries=2: no 429 storm
    assert len(limiter.penalties) == 2
    assert hub.count_429 == 3


def test_daily_limit_is_not_retried(sleeps: list[float]) -> None:
    def daily(request: httpx.Request) -> httpx.Response:
        body = {"status": "error", "message": "You have reached your daily limit.", "errorType": "RATE_LIMIT"}
        return httpx.Response(429, json={**body, "policyName": "DAILY", "correlationId": "c-1"})

    client = HubSpotClient("pat-x", transport=httpx.MockTransport(daily), sleep=sleeps.append)
    with client, pytest.raises(HubSpotRateLimited) as info:
        client.check_token()
    assert info.value.policy_name == "DAILY"
    assert sleeps == []


def test_5xx_is_retried_with_backoff_then_raised(hub: FakeHubSpot, client: HubSpotClient, sleeps: list[float]) -> None:
    hub.faults.update({"fail_next": 1, "fail_next_status": 502})
    client.check_token()
    assert [r.status for r in hub.requests] == [502, 200]
    hub.clear_requests()
    hub.faults.update({"fail_next": 5, "fail_next_status": 503})
    with pytest.raises(HubSpotTransientError) as info:
        client.check_token()
    assert info.value.status == 503
    assert [r.status for r in hub.requests] == [503, 503, 503]
    assert len(sleeps) == 3
    assert all(0 <= s <= 0.05 for s in sleeps)


def test_batch_upsert_is_retried_after_a_lost_reply(hub: FakeHubSpot, ready: HubSpotClient) -> None:
    hub.faults.update({"fail_next": 1, "fail_next_status": 504, "fail_next_after_apply": True})
    outcomes = ready.upsert_contacts([ContactInput("lost@shop.test")])
    # The first attempt created the contact; the retried upsert found it: still one contact.
    assert outcomes[0].ok
    assert outcomes[0].created is False
    assert len(hub.contacts) == 1
    assert hub.duplicates() == 0


def test_timeouts_are_transient(hub: FakeHubSpot, sleeps: list[float]) -> None:
    hub.faults.update({"latency_ms": 300})
    with (
        HubSpotClient(
            hub.token, base_url=hub.url, timeout=httpx.Timeout(0.05), max_retries=1, sleep=sleeps.append
        ) as c,
        pytest.raises(HubSpotTransientError, match="timed out"),
    ):
        c.check_token()
    assert len(sleeps) == 1


def test_connection_refused_is_transient_and_not_applied(sleeps: list[float]) -> None:
    client = HubSpotClient("pat-x", base_url="http://127.0.0.1:9", max_retries=1, sleep=sleeps.append)
    with client, pytest.raises(HubSpotTransientError) as info:
        client.check_token()
    assert info.value.maybe_applied is False


def test_error_classes_sit_on_the_retry_axis() -> None:
    def bad_request(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"status": "error", "message": "nope", "category": "VALIDATION_ERROR"})

    with HubSpotClient("pat-x", transport=httpx.MockTransport(bad_request)) as c, pytest.raises(TerminalError):
        c.check_token()
    assert issubclass(HubSpotValidationError, TerminalError)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("soon") is None
    assert scrub("Email address jane.doe@example.com is invalid") == "Email address <email> is invalid"


def test_logs_carry_neither_token_nor_emails(
    hub: FakeHubSpot, caplog: pytest.LogCaptureFixture, sleeps: list[float]
) -> None:
    caplog.set_level(logging.DEBUG)
    with HubSpotClient(hub.token, base_url=hub.url, max_retries=3, sleep=sleeps.append, rng=random.Random(1)) as c:
        c.ensure_properties()
        hub.faults.update({"fail_next": 2, "fail_next_status": 500})
        # "secret.person@nowhere" has no TLD: HubSpot answers "Email address <it> is invalid".
        outcomes = c.upsert_contacts([ContactInput("secret.person@nowhere"), ContactInput("ok@shop.test")])
    assert outcomes[0].error is not None
    assert "INVALID_EMAIL" in outcomes[0].error
    assert "secret.person" not in outcomes[0].error
    text = caplog.text
    assert hub.token not in text
    assert "secret.person" not in text
    assert "ok@shop.test" not in text
    assert "retry" in text
