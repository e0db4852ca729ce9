"""The fake HubSpot over raw HTTP: auth, rate limit headers, uniqueness, faults, control API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from storeloop.integrations.hubspot.fake import FakeHubSpot


@pytest.fixture
def http(hub: FakeHubSpot) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {hub.token}"}
    with httpx.Client(base_url=hub.url, headers=headers, timeout=2.0) as c:
        yield c


def make_unique_ref(http: httpx.Client) -> None:
    http.post("/crm/v3/properties/deals/groups", json={"name": "storeloop", "label": "Storeloop"})
    body = {
        "name": "storeloop_order_ref",
        "label": "Ref",
        "type": "string",
        "fieldType": "text",
        "groupName": "storeloop",
        "hasUniqueValue": True,
    }
    assert http.post("/crm/v3/properties/deals", json=body).status_code == 201


def test_missing_or_wrong_token_gets_the_documented_401(hub: FakeHubSpot) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {hub.token}"}):
        response = httpx.get(f"{hub.url}/crm/v3/objects/contacts", headers=headers)
        body = response.json()
        assert response.status_code == 401
        assert (body["status"], body["category"]) == ("error", "INVALID_AUTHENTICATION")
        assert body["message"].startswith("Authentication credentials not found")
        assert body["correlationId"]
        assert "X-HubSpot-RateLimit-Remaining" not in response.headers


def test_rate_limit_headers_and_the_documented_429(hub: FakeHubSpot, http: httpx.Client) -> None:
    hub.rate_limit = 3
    remaining = []
    for _ in range(3):
        response = http.get("/crm/v3/objects/contacts")
        assert response.status_code == 200
        assert response.headers["X-HubSpot-RateLimit-Max"] == "3"
        assert response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        assert int(response.headers["X-HubSpot-RateLimit-Daily-Remaining"]) > 0
        remaining.append(response.headers["X-HubSpot-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    limited = http.get("/crm/v3/objects/contacts")
    body = limited.json()
    assert limited.status_code == 429
    assert (body["policyName"], body["errorType"], body["status"]) == ("TEN_SECONDLY_ROLLING", "RATE_LIMIT", "error")
    assert 1 <= int(limited.headers["Retry-After"]) <= 10
    assert hub.count_429 == 1
    assert [r.status for r in hub.requests] == [200, 200, 200, 429]


def test_rolling_window_frees_up(http: httpx.Client, hub: FakeHubSpot) -> None:
    hub.rate_limit, hub.window_seconds = 2, 0.2
    assert [http.get("/crm/v3/objects/deals").status_code for _ in range(3)] == [200, 200, 429]
    deadline = time.monotonic() + 5
    while http.get("/crm/v3/objects/deals").status_code == 429:
        assert time.monotonic() < deadline, "the rolling window never freed up"
        time.sleep(0.02)


def test_unique_values_are_enforced_on_every_write(hub: FakeHubSpot, http: httpx.Client) -> None:
    make_unique_ref(http)
    first = http.post("/crm/v3/objects/deals", json={"properties": {"storeloop_order_ref": "s1-1"}})
    assert first.status_code == 201
    clash = http.post("/crm/v3/objects/deals", json={"properties": {"storeloop_order_ref": "s1-1"}})
    assert clash.status_code == 409
    assert clash.json()["category"] == "CONFLICT"
    assert clash.json()["message"].endswith(f"Existing ID: {first.json()['id']}")
    inputs = [{"idProperty": "storeloop_order_ref", "id": "s1-1", "properties": {"dealname": "x"}}]
    upsert = http.post("/crm/v3/objects/deals/batch/upsert", json={"inputs": inputs})
    assert upsert.status_code == 200
    assert upsert.json()["results"][0]["new"] is False
    assert hub.duplicates() == 0


def test_duplicates_counts_keys_hubspot_does_not_enforce(hub: FakeHubSpot, http: httpx.Client) -> None:
    http.post("/crm/v3/properties/line_items/groups", json={"name": "storeloop", "label": "S"})
    prop = {"name": "storeloop_line_ref", "label": "L", "type": "string", "fieldType": "text", "groupName": "storeloop"}
    unique = http.post("/crm/v3/properties/line_items", json={**prop, "hasUniqueValue": True})
    assert unique.status_code == 400  # HubSpot has no unique line item properties
    assert http.post("/crm/v3/properties/line_items", json=prop).status_code == 201
    assert http.post("/crm/v3/properties/line_items", json=prop).status_code == 409
    for _ in range(3):
        http.post("/crm/v3/objects/line_items", json={"properties": {"storeloop_line_ref": "s1-1-1"}})
    assert hub.duplicates() == 2
    assert list(hub.duplicate_groups()["line_items"]) == ["s1-1-1"]


def test_upsert_by_a_non_unique_property_is_refused(http: httpx.Client) -> None:
    inputs = [{"idProperty": "dealname", "id": "x", "properties": {}}]
    response = http.post("/crm/v3/objects/deals/batch/upsert", json={"inputs": inputs})
    assert response.status_code == 400
    assert "non-unique 0-3 property dealname" in response.json()["message"]
    too_many = [{"idProperty": "email", "id": f"{i}@x.io", "properties": {}} for i in range(101)]
    assert http.post("/crm/v3/objects/contacts/batch/upsert", json={"inputs": too_many}).status_code == 400


def test_multi_status_errors_carry_the_trace_id(hub: FakeHubSpot, http: httpx.Client) -> None:
    hub.faults.update({"reject_emails": ["b@x.io"]})
    inputs: list[dict[str, Any]] = [
        {"idProperty": "email", "id": e, "properties": {}, "objectWriteTraceId": str(i)}
        for i, e in enumerate(["a@x.io", "b@x.io"])
    ]
    response = http.post("/crm/v3/objects/contacts/batch/upsert", json={"inputs": inputs})
    body = response.json()
    assert response.status_code == 207
    assert body["numErrors"] == 1
    assert body["errors"][0]["context"]["objectWriteTraceId"] == ["1"]
    assert [r["properties"]["email"] for r in body["results"]] == ["a@x.io"]
    untraced = [{k: v for k, v in i.items() if k != "objectWriteTraceId"} for i in inputs]
    assert http.post("/crm/v3/objects/contacts/batch/upsert", json={"inputs": untraced}).status_code == 400


def test_search_get_and_batch_read(hub: FakeHubSpot, http: httpx.Client) -> None:
    inputs = [{"idProperty": "email", "id": f"s{i}@x.io", "properties": {"city": "Lyon"}} for i in range(5)]
    ids = [
        r["id"] for r in http.post("/crm/v3/objects/contacts/batch/upsert", json={"inputs": inputs}).json()["results"]
    ]
    flt = {"propertyName": "email", "operator": "IN", "values": ["s1@x.io", "S3@x.io"]}
    search = http.post("/crm/v3/objects/contacts/search", json={"filterGroups": [{"filters": [flt]}], "limit": 1})
    assert search.status_code == 200
    assert "X-HubSpot-RateLimit-Max" not in search.headers
    assert (search.json()["total"], len(search.json()["results"])) == (2, 1)
    assert search.json()["paging"]["next"]["after"] == "1"
    one = http.get(f"/crm/v3/objects/contacts/{ids[0]}", params={"properties": "email,city"})
    assert one.json()["properties"]["city"] == "Lyon"
    assert http.get("/crm/v3/objects/contacts/s2@x.io", params={"idProperty": "email"}).status_code == 200
    assert http.get("/crm/v3/objects/contacts/999").status_code == 404
    read = http.post("/crm/v3/objects/contacts/batch/read", json={"inputs": [{"id": ids[0]}, {"id": "1"}]})
    assert read.status_code == 207
    assert read.json()["errors"][0]["context"]["ids"] == ["1"]
    http.post("/crm/v3/objects/contacts/batch/archive", json={"inputs": [{"id": i} for i in ids]})
    assert hub.contacts == {}


def test_search_has_its_own_per_second_limit(hub: FakeHubSpot, http: httpx.Client) -> None:
    hub.search_rate_limit = 2
    codes = [http.post("/crm/v3/objects/deals/search", json={}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_control_api(hub: FakeHubSpot) -> None:
    faults = httpx.post(f"{hub.url}/__fake__/faults", json={"latency_ms": 5, "reject_refs": ["s1-9"]})
    assert faults.status_code == 200
    assert (hub.faults.latency_ms, hub.faults.reject_refs) == (5, {"s1-9"})
    assert httpx.post(f"{hub.url}/__fake__/faults", json={"nope": 1}).status_code == 400
    assert httpx.post(f"{hub.url}/__fake__/faults", json={"error_rate": 2}).status_code == 400
    assert httpx.post(f"{hub.url}/__fake__/limits", json={"rate_limit": 7}).json()["rate_limit"] == 7
    state = httpx.get(f"{hub.url}/__fake__/state").json()
    assert state["rate_limit"] == 7
    assert state["duplicates"] == 0
    assert httpx.post(f"{hub.url}/__fake__/reset").status_code == 200
    assert hub.faults.latency_ms == 0
    assert hub.request_count == 0  # control calls are not API requests
