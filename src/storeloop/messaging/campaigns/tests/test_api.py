"""``/api/v1/campaigns`` through HTTP: auth, store scoping, validation and the transitions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django_tasks_db.models import DBTaskResult

from storeloop.messaging.campaigns.models import Campaign
from storeloop.messaging.campaigns.tests.conftest import person, publish
from storeloop.messaging.models import Message
from storeloop.stores.models import ApiKey

pytestmark = pytest.mark.django_db
BASE = "/api/v1/campaigns"
BODY: dict[str, Any] = {
    "name": "Spring news",
    "template_key": "news",
    "channel": "email",
    "audience": {"all": [{"field": "country", "op": "in", "value": ["DE", "AT"]}]},
}


@pytest.fixture
def campaign(api: Any, news: Any) -> dict[str, Any]:
    response = api.post(BASE, BODY)
    assert response.status_code == 201, response.json()
    data: dict[str, Any] = response.json()
    return data


def test_every_route_needs_a_key(client: Any, store: Any) -> None:
    for method, path in [("get", BASE), ("post", BASE), ("get", f"{BASE}/1"), ("post", f"{BASE}/preview"),
                         ("post", f"{BASE}/1/schedule"), ("post", f"{BASE}/1/send"), ("post", f"{BASE}/1/pause"),
                         ("post", f"{BASE}/1/resume"), ("post", f"{BASE}/1/cancel")]:  # fmt: skip
        response = getattr(client, method)(path, content_type="application/json")
        assert response.status_code == 401, path
        assert response.json()["code"] == "unauthorized"
    bad = client.get(BASE, headers={"Authorization": "Bearer slk_nope"})
    assert bad.status_code == 401


def test_create_returns_the_draft(api: Any, campaign: dict[str, Any]) -> None:
    assert {k: campaign[k] for k in ("name", "template_key", "channel", "locale", "purpose", "state", "audience")} == {
        "name": "Spring news", "template_key": "news", "channel": "email", "locale": "en", "purpose": "marketing",
        "state": "draft", "audience": BODY["audience"],
    }  # fmt: skip
    assert campaign["figures"] is None
    assert Campaign.objects.get().created_by == f"api:{ApiKey.objects.get().prefix}"


def test_another_stores_campaign_is_not_found(api_for: Any, other_store: Any, campaign: dict[str, Any]) -> None:
    other = api_for(other_store)
    for method, suffix in [("get", ""), ("post", "/schedule"), ("post", "/send"), ("post", "/pause"),
                           ("post", "/resume"), ("post", "/cancel")]:  # fmt: skip
        path = f"{BASE}/{campaign['id']}{suffix}"
        response = other.get(path) if method == "get" else other.post(path, {"at": "2030-01-01T10:00:00Z"})
        assert response.status_code == 404, path
        assert response.json()["code"] == "campaign_not_found"
    assert other.get(BASE).json() == []
    assert Campaign.objects.get().state == "draft"


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"audience": {"all": [{"field": "shoe_size", "op": "eq", "value": 42}]}}, 422, "invalid_audience", None),
        ({"template_key": "nope"}, 422, "template_not_found", None),
        ({"channel": "sms"}, 422, "template_not_found", None),
        ({"channel": "fax"}, 422, "validation_error", "channel"),
        ({"name": ""}, 422, "validation_error", "name"),
        ({"audience": "everyone"}, 422, "validation_error", "audience"),
        ({"custom": {"bad key": 1}}, 422, "invalid_custom", None),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    api: Any, news: Any, change: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    response = api.post(BASE, {**BODY, **change})
    assert response.status_code == status
    body = response.json()
    assert body["code"] == code
    if field:
        assert [d["field"] for d in body["details"]] == [f"payload.{field}"]
    assert not Campaign.objects.exists()


def test_an_invalid_audience_names_the_path_and_field(api: Any, news: Any) -> None:
    audience = {
        "all": [{"field": "country", "op": "eq", "value": "DE"}, {"field": "shoe_size", "op": "eq", "value": 4}]
    }
    body = api.post(BASE, {**BODY, "audience": audience}).json()
    assert body["message"].startswith("invalid audience at all[1]: unknown field 'shoe_size'; fields are country, ")
    assert body["details"][0]["path"] == "all[1]"
    assert body["details"][0]["field"] == "shoe_size"


def test_preview_counts_the_audience_and_who_consent_allows(api: Any, store: Any, other_store: Any) -> None:
    person(store, "ann", country="DE", consent=("email",))
    person(store, "bob", country="AT")
    person(store, "cara", country="FR", consent=("email",))
    person(other_store, "dan", country="DE", consent=("email",))
    response = api.post(f"{BASE}/preview", {"audience": BODY["audience"], "channel": "email"})
    assert response.status_code == 200
    assert response.json() == {"audience": 2, "eligible": 1}
    assert api.post(f"{BASE}/preview", {"audience": BODY["audience"]}).json() == {"audience": 2, "eligible": None}
    bad = api.post(f"{BASE}/preview", {"audience": {"field": "country", "op": "gt", "value": "DE"}})
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_audience"


def test_schedule_pause_resume_cancel(api: Any, store: Any, campaign: dict[str, Any]) -> None:
    person(store, "ann", country="DE", consent=("email",))
    path = f"{BASE}/{campaign['id']}"
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).replace(microsecond=0)
    response = api.post(f"{path}/schedule", {"at": at.isoformat()})
    assert response.status_code == 200
    data = response.json()
    assert (data["state"], data["scheduled_at"], data["local_time"]) == ("scheduled", at.isoformat().replace(
        "+00:00", "Z"), False)  # fmt: skip
    assert data["figures"]["targeted"] == 0
    assert DBTaskResult.objects.filter(task_path="storeloop.messaging.tasks.materialise_campaign").count() == 1

    assert api.post(f"{path}/pause").json()["state"] == "paused"
    conflict = api.post(f"{path}/schedule", {"at": at.isoformat()})
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "campaign_state"
    assert (
        conflict.json()["message"] == f"campaign {campaign['id']} is paused; only draft or scheduled campaigns "
        "can be scheduled (resume it instead)"
    )
    assert api.post(f"{path}/resume").json()["state"] == "scheduled"
    assert api.post(f"{path}/cancel").json()["state"] == "cancelled"
    again = api.post(f"{path}/cancel")
    assert (again.status_code, again.json()["code"]) == (409, "campaign_state")
    assert not Message.objects.exists()


def test_schedule_rejects_bad_times(api: Any, campaign: dict[str, Any]) -> None:
    path = f"{BASE}/{campaign['id']}/schedule"
    past = api.post(path, {"at": "2020-01-01T10:00:00Z"})
    assert (past.status_code, past.json()["code"]) == (422, "schedule_in_past")
    naive = api.post(path, {"at": "2030-01-01T10:00:00"})
    assert (naive.status_code, naive.json()["code"]) == (422, "naive_datetime")
    garbage = api.post(path, {"at": "tomorrow"})
    assert (garbage.status_code, garbage.json()["code"]) == (422, "validation_error")
    for at, local_time in [("9999-12-31T23:00:00-05:00", False), ("9999-12-31T23:00:00", True),
                           ("0001-01-01T00:00:00+05:00", False)]:  # fmt: skip
        # Each would overflow on its way to UTC (a 500 before): refused, naming the field, nothing scheduled.
        response = api.post(path, {"at": at, "local_time": local_time})
        assert response.status_code == 422, at
        body = response.json()
        assert body["code"] == "validation_error"
        assert "between the years 1900 and 2999" in str(body["details"])
        assert "at" in str(body["details"])
        assert api.get(f"{BASE}/{campaign['id']}").json()["state"] == "draft"
    local = api.post(path, {"at": "2030-01-01T10:00:00", "local_time": True}).json()
    assert (local["state"], local["scheduled_at"], local["local_time"]) == ("scheduled", "2030-01-01T10:00:00Z", True)
    assert local["starts_at"] == "2029-12-31T20:00:00Z"


def test_send_now_materialises_in_the_worker_and_shows_live_figures(
    api: Any, store: Any, campaign: dict[str, Any]
) -> None:
    from storeloop.messaging.manager import MessagingManager

    person(store, "ann", country="DE", consent=("email",))
    person(store, "bob", country="AT")
    sent = api.post(f"{BASE}/{campaign['id']}/send").json()
    assert sent["state"] == "scheduled"
    MessagingManager().materialise_campaign(campaign["id"])  # what the queued task runs
    detail = api.get(f"{BASE}/{campaign['id']}").json()
    assert detail["state"] == "running"
    assert detail["template_version"] == 1
    assert {k: v for k, v in detail["figures"].items() if v} == {"targeted": 2, "suppressed": 1, "queued": 1,
                                                                 "messages": 1}  # fmt: skip
    listing = api.get(BASE, state="running").json()
    assert [c["id"] for c in listing] == [campaign["id"]]
    assert api.get(BASE, state="bogus").json()["code"] == "invalid_state"


def test_a_template_of_another_store_cannot_be_used(api: Any, other_store: Any) -> None:
    publish(other_store, "news", "email", subject="Hi", body_text="Hello")
    response = api.post(BASE, BODY)
    assert (response.status_code, response.json()["code"]) == (422, "template_not_found")
    assert not Campaign.objects.exists()
