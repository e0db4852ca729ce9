"""The fake's HTTP contract, exercised with plain httpx (no ZohoClient)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from storeloop.integrations.zoho.fake import ORDER_REF, FakeZoho

FORM = {"grant_type": "refresh_token", "client_id": "zid", "client_secret": "zsecret", "refresh_token": "1000.refresh"}


@pytest.fixture
def http(zoho: FakeZoho) -> Any:
    with httpx.Client(base_url=zoho.url, timeout=5) as client:
        yield client


def mint(http: httpx.Client, **overrides: str) -> httpx.Response:
    return http.post("/oauth/v2/token", data={**FORM, **overrides})


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Zoho-oauthtoken {token}"}


def test_token_endpoint_shapes(zoho: FakeZoho, http: httpx.Client) -> None:
    ok = mint(http)
    body = ok.json()
    assert ok.status_code == 200
    assert body["access_token"].startswith("1000.")
    assert (body["api_domain"], body["token_type"], body["expires_in"]) == (zoho.api_url, "Bearer", 3600)
    assert "refresh_token" not in body
    assert mint(http, refresh_token="1000.other").json() == {"error": "invalid_code"}
    assert mint(http, client_secret="nope").json() == {"error": "invalid_client"}
    zoho.revoke_refresh_token()
    revoked = mint(http)
    assert (revoked.status_code, revoked.json()) == (200, {"error": "invalid_code"})
    assert zoho.refresh_count == 1


def test_mint_throttle_and_the_sixteenth_token(zoho: FakeZoho, http: httpx.Client) -> None:
    zoho.faults.token_mint_limit = 0
    tokens = [mint(http).json()["access_token"] for _ in range(16)]
    assert http.get("/crm/v8/org", headers=auth(tokens[0])).status_code == 401  # the oldest died
    assert http.get("/crm/v8/org", headers=auth(tokens[1])).status_code == 200
    zoho.faults.token_mint_limit = 10  # 16 minted in the last 10 minutes already
    denied = mint(http)
    assert denied.status_code == 200
    assert denied.json()["error"] == "Access Denied"


def test_api_auth_errors(zoho: FakeZoho, http: httpx.Client) -> None:
    missing = http.get("/crm/v8/org")
    assert (missing.status_code, missing.json()["code"]) == (401, "AUTHENTICATION_FAILURE")
    token = mint(http).json()["access_token"]
    bearer = http.get("/crm/v8/org", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 401
    zoho.expire_access_tokens()
    expired = http.get("/crm/v8/org", headers=auth(token))
    assert expired.status_code == 401
    assert expired.json() == {
        "code": "INVALID_TOKEN",
        "details": {},
        "message": "invalid oauth token",
        "status": "error",
    }


def test_routes_and_envelopes(http: httpx.Client) -> None:
    headers = auth(mint(http).json()["access_token"])
    assert http.get("/crm/v8/org", headers=headers).json()["org"][0]["iso_code"] == "EUR"
    users = http.get("/crm/v8/users", params={"type": "CurrentUser"}, headers=headers).json()
    assert users["users"][0]["status"] == "active"
    fields = http.get("/crm/v8/settings/fields", params={"module": "Deals"}, headers=headers).json()["fields"]
    ref = next(f for f in fields if f["api_name"] == ORDER_REF)
    assert (ref["unique"], ref["custom_field"]) == ({"case_sensitive": False}, True)
    bad_module = http.post("/crm/v8/Nope/upsert", json={"data": [{}]}, headers=headers)
    assert (bad_module.status_code, bad_module.json()["code"]) == (400, "INVALID_MODULE")
    bad_url = http.get("/crm/v8/no/such/thing", headers=headers)
    assert (bad_url.status_code, bad_url.json()["code"]) == (404, "INVALID_URL_PATTERN")
    too_many = http.post("/crm/v8/Contacts/upsert", json={"data": [{}] * 101}, headers=headers)
    assert (too_many.status_code, too_many.json()["code"]) == (400, "LIMIT_EXCEEDED")
    assert http.get("/crm/v8/Contacts/4150868000999999999", headers=headers).status_code == 204


def test_upsert_answer_shapes(zoho: FakeZoho, http: httpx.Client) -> None:
    headers = auth(mint(http).json()["access_token"])
    body = {
        "data": [{"Last_Name": "Doe", "Email": "j@x.io"}, {"First_Name": "no last name", "Email": "k@x.io"}],
        "duplicate_check_fields": ["Email"],
    }
    mixed = http.post("/crm/v8/Contacts/upsert", json=body, headers=headers)
    assert mixed.status_code == 207
    inserted, missing = mixed.json()["data"]
    assert (inserted["code"], inserted["action"], inserted["duplicate_field"]) == ("SUCCESS", "insert", None)
    assert inserted["message"] == "record added"
    assert set(inserted["details"]) == {"id", "Created_Time", "Modified_Time", "Created_By", "Modified_By"}
    assert missing == {
        "code": "MANDATORY_NOT_FOUND",
        "details": {"api_name": "Last_Name", "json_path": "$.data[1].Last_Name"},
        "message": "required field not found",
        "status": "error",
    }
    again = http.post("/crm/v8/Contacts/upsert", json={**body, "data": body["data"][:1]}, headers=headers)
    updated = again.json()["data"][0]
    assert (again.status_code, updated["action"], updated["duplicate_field"]) == (200, "update", "Email")
    assert updated["details"]["id"] == inserted["details"]["id"]


def test_unique_field_is_enforced_across_match_fields(zoho: FakeZoho, http: httpx.Client) -> None:
    headers = auth(mint(http).json()["access_token"])
    deal = {"Deal_Name": "D", "Stage": "Won", "Closing_Date": "2025-01-01"}
    http.post("/crm/v8/Deals/upsert", json={"data": [{**deal, ORDER_REF: "s1-1"}]}, headers=headers)
    # Matching on Deal_Name finds the record, but changing its ref to one another deal holds clashes.
    http.post(
        "/crm/v8/Deals/upsert",
        json={"data": [{**deal, "Deal_Name": "E", ORDER_REF: "s1-2"}], "duplicate_check_fields": [ORDER_REF]},
        headers=headers,
    )
    clash = http.post(
        "/crm/v8/Deals/upsert",
        json={"data": [{**deal, ORDER_REF: "s1-2"}], "duplicate_check_fields": ["Deal_Name"]},
        headers=headers,
    )
    error = clash.json()["data"][0]
    assert (clash.status_code, error["code"], error["details"]["api_name"]) == (400, "DUPLICATE_DATA", ORDER_REF)
    assert zoho.duplicates() == 0
    not_unique = http.post(
        "/crm/v8/Deals/upsert", json={"data": [deal], "duplicate_check_fields": ["Stage"]}, headers=headers
    )
    assert (not_unique.status_code, not_unique.json()["code"]) == (400, "INVALID_DATA")


def test_control_surface(zoho: FakeZoho, http: httpx.Client) -> None:
    faults = http.post("/__fake__/faults", json={"fail_next": 1, "reject_emails": ["X@Y.io"]}).json()
    assert (faults["fail_next"], faults["reject_emails"]) == (1, ["x@y.io"])
    assert http.post("/__fake__/faults", json={"nope": 1}).status_code == 400
    assert http.post("/__fake__/faults", json={"error_rate": 2}).status_code == 400
    assert http.get("/crm/v8/org").status_code == 503  # faults come before auth
    http.post("/__fake__/fields/remove", json={"module": "Deals", "api_name": ORDER_REF})
    assert all(f["api_name"] != ORDER_REF for f in zoho.crm.fields_metadata("Deals"))
    http.post("/__fake__/revoke")
    assert mint(http).json() == {"error": "invalid_code"}
    state = http.get("/__fake__/state").json()
    assert (state["refresh_token_revoked"], state["duplicates"]) == (True, 0)
    assert http.get("/__fake__/records", params={"module": "Contacts"}).json() == {"data": []}


def test_keep_alive_reuses_one_connection(zoho: FakeZoho, http: httpx.Client) -> None:
    headers = auth(mint(http).json()["access_token"])
    for _ in range(5):
        assert http.get("/crm/v8/org", headers=headers).status_code == 200
    assert zoho.connections_accepted == 1
