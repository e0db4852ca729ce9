"""The campaign admin: pages load, the add form validates like the API, actions transition."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from storeloop.messaging.campaigns.models import Campaign
from storeloop.messaging.campaigns.tests.conftest import person
from storeloop.messaging.manager import MessagingManager

pytestmark = pytest.mark.django_db
PAGE = "/admin/campaigns/campaign/"


@pytest.fixture
def admin_client(db: None) -> Client:
    get_user_model().objects.create_superuser("root", "", "a-long-password-1")
    client = Client()
    client.login(username="root", password="a-long-password-1")
    return client


def form(store: Any, **change: Any) -> dict[str, Any]:
    data = {"store": store.pk, "name": "Spring news", "template_key": "news", "channel": "email", "locale": "en",
            "purpose": "marketing", "audience": json.dumps({"all": []}), "custom": "{}"}  # fmt: skip
    return {**data, **change}


def test_pages_load_and_the_detail_shows_live_figures(admin_client: Client, store: Any, news: Any) -> None:
    person(store, "ann", consent=("email",))
    campaign = MessagingManager().send_bulk_message(store, template_key="news", channel="email", audience={"all": []})
    MessagingManager().materialise_campaign(campaign.pk)
    assert admin_client.get(PAGE).status_code == 200
    assert admin_client.get(f"{PAGE}add/").status_code == 200
    detail = admin_client.get(f"{PAGE}{campaign.pk}/change/")
    assert detail.status_code == 200
    assert "targeted: 1, suppressed: 0, queued: 1" in detail.content.decode()
    assert admin_client.get(f"{PAGE}{campaign.pk}/delete/").status_code == 403


def test_the_add_form_refuses_what_the_api_refuses(admin_client: Client, store: Any, news: Any) -> None:
    bad = admin_client.post(f"{PAGE}add/", form(store, audience=json.dumps({"field": "shoe_size"})))
    assert bad.status_code == 200
    assert "invalid audience at (root): unknown field &#x27;shoe_size&#x27;" in bad.content.decode()
    missing = admin_client.post(f"{PAGE}add/", form(store, template_key="nope"))
    assert "no published email template &#x27;nope&#x27; for en; publish it first [template_not_found]" in (
        missing.content.decode()
    )
    assert not Campaign.objects.exists()
    created = admin_client.post(f"{PAGE}add/", form(store))
    assert created.status_code == 302
    campaign = Campaign.objects.get()
    assert (campaign.name, campaign.state, campaign.created_by) == ("Spring news", "draft", "admin:root")


def test_actions_send_pause_resume_and_cancel(admin_client: Client, store: Any, news: Any) -> None:
    campaign = MessagingManager().create_campaign(store, name="N", template_key="news", channel="email",
                                                  audience={"all": []})  # fmt: skip

    def act(action: str) -> str:
        assert admin_client.post(PAGE, {"action": action, "_selected_action": [campaign.pk]}).status_code == 302
        campaign.refresh_from_db()
        return str(campaign.state)

    assert act("send_now") == "scheduled"
    assert act("pause") == "paused"
    assert act("pause") == "paused"  # refused with a message, nothing changes
    assert act("resume") == "scheduled"
    assert act("cancel") == "cancelled"
    response = admin_client.post(PAGE, {"action": "resume", "_selected_action": [campaign.pk]}, follow=True)
    assert f"N: campaign {campaign.pk} is cancelled; only paused campaigns resume" in response.content.decode()
