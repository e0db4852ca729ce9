"""The templates API: save (validation with lines), versions, publish, rollback, preview, access."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import ApiClient
from django.test import Client

from storeloop.messaging.models import MessageTemplate, TemplateVersion
from storeloop.messaging.templates import TemplateRepository
from storeloop.stores.models import ApiKey

pytestmark = pytest.mark.django_db
TEXT = "Hi {{ contact.first_name }}, order {{ order.number }}: {{ order.total }} {{ order.currency }}"
SMS = {"key": "order-confirmation", "channel": "sms", "body_text": TEXT}


def create(api: ApiClient, **overrides: Any) -> Any:
    return api.post("/api/v1/templates", {**SMS, **overrides})


def saved_template(store: Any, *bodies: str, publish: int | None = None) -> MessageTemplate:
    """A template of ``store`` with one version per body, ``publish`` naming the published one."""
    repo = TemplateRepository()
    versions = [repo.save_template(store, "order-confirmation", "sms", body_text=body) for body in bodies]
    if publish is not None:
        repo.publish(versions[publish - 1])
    return MessageTemplate.objects.get(pk=versions[0].template_id)


def test_create_saves_a_draft_version_and_returns_it(api: ApiClient, store: Any) -> None:
    response = create(api, description="Sent when an order is placed")
    assert response.status_code == 201
    body = response.json()
    template = MessageTemplate.objects.get()
    assert body["template"] | {"created_at": None, "updated_at": None} == {
        "id": template.pk, "key": "order-confirmation", "channel": "sms", "locale": "en",
        "description": "Sent when an order is placed", "published_version": None, "latest_version": 1,
        "version_count": 1, "created_at": None, "updated_at": None,
    }  # fmt: skip
    version = body["version"]
    assert (version["number"], version["published"], version["body_text"]) == (1, False, SMS["body_text"])
    assert version["variables"] == ["contact", "order", "store"]
    assert version["created_by"] == f"api-key:{ApiKey.objects.get().prefix}"
    assert template.store_id == store.pk
    again = create(api, body_text="Hello {{ contact.first_name }}")
    assert again.status_code == 201
    assert again.json()["version"]["number"] == 2
    assert again.json()["template"]["id"] == template.pk


@pytest.mark.parametrize(
    ("overrides", "code", "detail"),
    [
        (
            {"body_text": "Hi {{ contact.first_name }}\nOrder {{ order.number }"},
            "invalid_template",
            {"field": "body_text", "line": 2},
        ),
        ({"body_text": "one\ntwo\n{{ coupon.code }}"}, "invalid_template", {"field": "body_text", "line": 3}),
        ({"body_text": "{{ ''.__class__.__mro__ }}"}, "invalid_template", {"field": "body_text", "line": 1}),
        ({"body_text": "{{ custom.code }}"}, "invalid_template", {"field": "body_text", "line": 1}),
        ({"body_text": "Zoë 🎉 " * 80}, "sms_too_long", {"field": "body_text"}),
        ({"body_html": "<p>x</p>"}, "invalid_template", {"field": "body_html"}),
        ({"variables": ["contact", "secrets"]}, "invalid_variables", {"field": "variables"}),
        ({"key": "Order Confirmation"}, "invalid_key", {"field": "key"}),
        ({"locale": "english please"}, "invalid_locale", {"field": "locale"}),
        ({"channel": "email", "subject": ""}, "invalid_template", {"field": "subject"}),
        ({"channel": "email", "subject": "S" * 301}, "too_long", {"field": "subject"}),
    ],
)
def test_invalid_templates_are_422_with_the_place_and_nothing_is_written(
    api: ApiClient, store: Any, overrides: dict[str, Any], code: str, detail: dict[str, Any]
) -> None:
    response = create(api, **overrides)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == code
    assert {k: body["details"][0][k] for k in detail} == detail
    assert body["message"]
    assert not MessageTemplate.objects.exists()
    assert not TemplateVersion.objects.exists()


def test_line_numbers_come_back_in_the_message_too(api: ApiClient, store: Any) -> None:
    body = create(api, body_text="Hi\n{{ contact.first_name }}\n{{ secret_sauce }}").json()
    assert body["message"] == (
        "body_text, line 3: unknown variable 'secret_sauce' (declared: contact, order, preferences_url, store, "
        "unsubscribe_url)"
    )
    assert body["details"] == [{"field": "body_text", "line": 3, "error": body["message"].split(": ", 1)[1]}]


@pytest.mark.parametrize(
    "payload",
    [
        {**SMS, "channel": "fax"},
        {**SMS, "body": "typo for body_text"},
        {"channel": "sms", "body_text": "no key"},
        {**SMS, "variables": "contact"},
    ],
)
def test_malformed_payloads_are_422_validation_errors(api: ApiClient, store: Any, payload: dict[str, Any]) -> None:
    response = api.post("/api/v1/templates", payload)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert not MessageTemplate.objects.exists()


def test_list_filters_and_pages(api: ApiClient, store: Any, other_store: Any) -> None:
    repo = TemplateRepository()
    repo.save_template(store, "a-sms", "sms", body_text="A")
    repo.save_template(store, "b-mail", "email", subject="B", body_text="B")
    repo.save_template(store, "b-mail", "email", subject="B2", body_text="B2")
    repo.save_template(other_store, "theirs", "sms", body_text="C")
    listing = api.get("/api/v1/templates").json()
    assert listing["count"] == 2
    assert [(t["key"], t["version_count"], t["latest_version"]) for t in listing["items"]] == [
        ("a-sms", 1, 1),
        ("b-mail", 2, 2),
    ]
    assert [t["key"] for t in api.get("/api/v1/templates", channel="email").json()["items"]] == ["b-mail"]
    page = api.get("/api/v1/templates", limit=1).json()
    assert (page["count"], page["next_offset"], len(page["items"])) == (2, 1, 1)
    bad = api.get("/api/v1/templates", channel="fax")
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_channel"
    assert api.get("/api/v1/templates", limit=500).json()["code"] == "invalid_limit"


def test_detail_lists_versions_newest_first(api: ApiClient, store: Any) -> None:
    template = saved_template(store, "one {{ order.number }}", "two {{ order.number }}", publish=1)
    body = api.get(f"/api/v1/templates/{template.pk}").json()
    assert body["published_version"] == 1
    assert [(v["number"], v["published"], v["body_text"]) for v in body["versions"]] == [
        (2, False, "two {{ order.number }}"),
        (1, True, "one {{ order.number }}"),
    ]


def test_save_version_publish_and_rollback(api: ApiClient, store: Any) -> None:
    template_id = create(api).json()["template"]["id"]
    second = api.post(f"/api/v1/templates/{template_id}/versions", {"body_text": "v2 {{ order.number }}"})
    assert second.status_code == 201
    assert second.json()["version"]["number"] == 2
    api.post(f"/api/v1/templates/{template_id}/versions", {"body_text": "v3 {{ order.number }}"})

    published = api.post(f"/api/v1/templates/{template_id}/publish", {"version": 3})
    assert published.status_code == 200
    assert published.json()["published_version"] == 3
    assert TemplateRepository().get_template(store, "order-confirmation", "sms").number == 3

    rolled = api.post(f"/api/v1/templates/{template_id}/rollback", {})
    assert rolled.json()["published_version"] == 2
    assert TemplateRepository().get_template(store, "order-confirmation", "sms").number == 2
    to_first = api.post(f"/api/v1/templates/{template_id}/rollback", {"version": 1})
    assert to_first.json()["published_version"] == 1
    nothing_older = api.post(f"/api/v1/templates/{template_id}/rollback", {})
    assert nothing_older.status_code == 409
    assert nothing_older.json()["code"] == "no_older_version"
    not_older = api.post(f"/api/v1/templates/{template_id}/rollback", {"version": 3})
    assert not_older.status_code == 422
    assert not_older.json()["code"] == "not_an_older_version"
    missing = api.post(f"/api/v1/templates/{template_id}/publish", {"version": 9})
    assert missing.status_code == 404
    assert missing.json()["code"] == "version_not_found"
    assert MessageTemplate.objects.get().published.number == 1  # type: ignore[union-attr]


def test_rollback_with_nothing_published_is_a_conflict(api: ApiClient, store: Any) -> None:
    template = saved_template(store, "one", "two")
    response = api.post(f"/api/v1/templates/{template.pk}/rollback", {})
    assert response.status_code == 409
    assert response.json()["code"] == "nothing_published"
    assert MessageTemplate.objects.get().published is None


def test_invalid_new_version_is_422_and_the_template_keeps_its_versions(api: ApiClient, store: Any) -> None:
    template = saved_template(store, "one", publish=1)
    response = api.post(f"/api/v1/templates/{template.pk}/versions", {"body_text": "{% if %}"})
    assert response.status_code == 422
    assert response.json()["details"][0]["line"] == 1
    assert list(TemplateVersion.objects.values_list("number", flat=True)) == [1]


def test_preview_renders_the_published_version_with_sample_data(api: ApiClient, store: Any) -> None:
    template = saved_template(store, "Old {{ order.number }}", SMS["body_text"], publish=1)
    default = api.post(f"/api/v1/templates/{template.pk}/preview", {}).json()
    assert (default["version"], default["text"]) == (1, "Old 1042")
    body = api.post(f"/api/v1/templates/{template.pk}/preview", {"version": 2, "contact": {"first_name": "Ann"}}).json()
    assert body == {
        "version": 2, "subject": "", "text": "Hi Ann, order 1042: 59.90 EUR", "html": "", "wa_parameters": [],
        "sms": {"encoding": "GSM-7", "characters": 29, "segments": 1, "non_gsm": []},
    }  # fmt: skip


def test_preview_of_an_unpublished_template_uses_the_newest_version(api: ApiClient, store: Any) -> None:
    template = saved_template(store, "one", "two")
    assert api.post(f"/api/v1/templates/{template.pk}/preview", {}).json()["text"] == "two"


def test_preview_with_sample_data_that_lacks_a_value_is_422(api: ApiClient, store: Any) -> None:
    template = saved_template(store, "Code {{ order.coupon }}")
    response = api.post(f"/api/v1/templates/{template.pk}/preview", {"order": {"number": "7"}})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_template"
    assert "coupon" in response.json()["message"]
    unknown_root = api.post(f"/api/v1/templates/{template.pk}/preview", {"secrets": {}})
    assert unknown_root.status_code == 422
    assert unknown_root.json()["code"] == "validation_error"


def test_another_stores_template_is_404_and_untouched(api: ApiClient, other_store: Any) -> None:
    theirs = saved_template(other_store, "one", "two", publish=2)
    base = f"/api/v1/templates/{theirs.pk}"
    for response in [
        api.get(base),
        api.post(f"{base}/versions", {"body_text": "mine now"}),
        api.post(f"{base}/publish", {"version": 1}),
        api.post(f"{base}/rollback", {}),
        api.post(f"{base}/preview", {}),
    ]:
        assert response.status_code == 404
        assert response.json()["code"] == "template_not_found"
    assert TemplateVersion.objects.count() == 2
    assert MessageTemplate.objects.get().published.number == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/templates"),
        ("post", "/api/v1/templates"),
        ("get", "/api/v1/templates/{id}"),
        ("post", "/api/v1/templates/{id}/versions"),
        ("post", "/api/v1/templates/{id}/publish"),
        ("post", "/api/v1/templates/{id}/rollback"),
        ("post", "/api/v1/templates/{id}/preview"),
    ],
)
def test_every_template_endpoint_needs_a_key(store: Any, method: str, path: str) -> None:
    template = saved_template(store, "one", "two", publish=2)
    url = path.format(id=template.pk)
    payload: dict[str, Any] = {**SMS} if path.endswith("templates") else {"version": 1, "body_text": "x"}
    client = Client()
    response = client.get(url) if method == "get" else client.post(url, payload, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert TemplateVersion.objects.count() == 2
    assert MessageTemplate.objects.get().published.number == 2  # type: ignore[union-attr]


def test_an_sms_template_may_use_values_the_sample_lacks(api: ApiClient, store: Any) -> None:
    response = create(api, body_text="Your code: {{ custom.coupon }}", variables=["custom"])
    assert response.status_code == 201
    preview = api.post(f"/api/v1/templates/{response.json()['template']['id']}/preview", {"custom": {"coupon": "X1"}})
    assert preview.json()["text"] == "Your code: X1"


def test_a_template_that_fails_at_run_time_is_422_not_a_crash(api: ApiClient, store: Any) -> None:
    response = create(api, body_text="{{ order.number / 0 }}")
    assert response.status_code == 422
    assert response.json()["message"] == (
        "body_text: cannot render: TypeError: unsupported operand type(s) for /: 'str' and 'int'"
    )
    assert not TemplateVersion.objects.exists()
    mail = create(api, channel="email", subject="Hi", body_text="{{ 1 / (order.number | int - 1042) }}")
    assert mail.status_code == 201  # e-mail bodies are not sample-rendered on save
    preview = api.post(f"/api/v1/templates/{mail.json()['template']['id']}/preview", {})
    assert preview.status_code == 422
    assert preview.json()["message"] == "body_text: cannot render: ZeroDivisionError: division by zero"
