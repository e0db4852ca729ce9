"""The unsubscribe page and the preference center in a real browser, from the links we send."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from storeloop.consent.models import ConsentEvent, ConsentState, Preference
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact

pytestmark = pytest.mark.django_db(transaction=True)

gate = MessagingConsentManager()


@pytest.fixture
def subscribed(store: Any, live_server: Any, settings: Any) -> Contact:
    """A contact who opted in to marketing email at checkout; links point at the live server."""
    settings.PUBLIC_URL = live_server.url
    contact = Contact.objects.create(store=store, email="ann@example.com", phone="+447700900123")
    gate.grant_consent(contact, "email", "marketing", source="checkout")
    return contact


def consent_rows() -> list[tuple[Any, ...]]:
    return list(ConsentEvent.objects.order_by("pk").values_list("channel", "purpose", "action", "source"))


def test_unsubscribe_link_asks_then_unsubscribes(page: Page, subscribed: Contact) -> None:
    link = gate.generate_unsubscribe_link(subscribed)

    response = page.goto(link)
    assert response is not None
    assert response.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text("Unsubscribe from marketing email?")
    expect(page.get_by_text("For a…@example.com.")).to_be_visible()
    assert gate.has_consent(subscribed, "email", "marketing").reason == "consent"  # opening it is not consent

    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
    expect(page.get_by_text("We will not send marketing email to a…@example.com any more.")).to_be_visible()
    assert gate.has_consent(subscribed, "email", "marketing").reason == "withdrawn"
    assert gate.has_consent(subscribed, "email", "transactional").reason == "contract"
    withdrawal = ConsentEvent.objects.get(action="withdraw")
    assert (withdrawal.channel, withdrawal.purpose, withdrawal.source) == ("email", "marketing", "unsubscribe_link")
    assert withdrawal.evidence["ip"] == "127.0.0.1"
    assert "Chrome/" in withdrawal.evidence["user_agent"]


def test_tampered_link_shows_the_error_page_and_changes_nothing(page: Page, subscribed: Contact) -> None:
    link = gate.generate_unsubscribe_link(subscribed)
    before = consent_rows()

    response = page.goto(f"{link[:-3]}xyz")
    assert response is not None
    assert response.status == 422
    expect(page.get_by_role("heading", level=1)).to_have_text("This link does not work")
    expect(page.locator(".error")).to_have_text("this link is not valid")
    expect(page.get_by_role("button")).to_have_count(0)
    assert consent_rows() == before
    assert gate.has_consent(subscribed, "email", "marketing").reason == "consent"


def test_preference_center_changes_channels_frequency_and_pause(page: Page, subscribed: Contact) -> None:
    pause_until = timezone.now().date() + dt.timedelta(days=30)
    page.goto(gate.generate_unsubscribe_link(subscribed))
    page.get_by_role("link", name="choose what you receive").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your preferences")
    offers, service = (
        page.get_by_role("group", name="News and offers"),
        page.get_by_role("group", name="Order and delivery updates"),
    )
    email, sms, whatsapp = (offers.get_by_label(name) for name in ("Email", "Text messages", "Whatsapp messages"))
    expect(email).to_be_checked()
    expect(sms).not_to_be_checked()
    expect(whatsapp).not_to_be_checked()
    service_sms = service.get_by_label("Text messages")
    for name in ("Email", "Text messages", "Whatsapp messages"):  # service messages: on unless turned off
        expect(service.get_by_label(name)).to_be_checked()
    service_sms.uncheck()
    expect(page.get_by_label("As it happens")).to_be_checked()

    email.uncheck()
    whatsapp.check()
    page.get_by_label("At most monthly").check()
    page.get_by_label("Pause everything until").fill(pause_until.isoformat())
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_text("Saved.")).to_be_visible()
    expect(email).not_to_be_checked()
    expect(whatsapp).to_be_checked()
    expect(service_sms).not_to_be_checked()
    expect(service.get_by_label("Email")).to_be_checked()
    expect(page.get_by_label("At most monthly")).to_be_checked()
    expect(page.get_by_label("Pause everything until")).to_have_value(pause_until.isoformat())
    assert gate.has_consent(subscribed, "email", "marketing").reason == "withdrawn"
    assert gate.has_consent(subscribed, "whatsapp", "marketing").reason == "paused"
    assert gate.has_consent(subscribed, "sms", "marketing").reason == "no_consent"
    preference = Preference.objects.get(contact=subscribed)
    assert (preference.frequency, preference.paused_until) == (
        "monthly",
        dt.datetime.combine(pause_until, dt.time(), dt.UTC),
    )
    assert gate.has_consent(subscribed, "sms", "transactional").reason == "withdrawn"
    assert consent_rows()[1:] == [
        ("email", "marketing", "withdraw", "preference_center"),
        ("sms", "transactional", "withdraw", "preference_center"),
        ("whatsapp", "marketing", "grant", "preference_center"),
    ]
    assert set(ConsentState.objects.filter(contact=subscribed).values_list("channel", "purpose", "status")) == {
        ("email", "marketing", "withdrawn"),
        ("sms", "transactional", "withdrawn"),
        ("whatsapp", "marketing", "granted"),
    }


def test_clearing_the_pause_resumes_marketing(page: Page, subscribed: Contact) -> None:
    gate.set_preferences(subscribed, frequency="weekly", paused_until=timezone.now() + dt.timedelta(days=10))
    assert gate.has_consent(subscribed, "email", "marketing").reason == "paused"
    token = gate.generate_unsubscribe_link(subscribed).rsplit("/", 1)[1]
    before = consent_rows()

    page.goto(f"/preferences/{token}")
    pause = page.get_by_label("Pause everything until")
    expect(pause).not_to_have_value("")
    expect(page.get_by_label("At most weekly")).to_be_checked()
    pause.fill("")
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_text("Saved.")).to_be_visible()
    expect(pause).to_have_value("")
    preference = Preference.objects.get(contact=subscribed)
    assert (preference.frequency, preference.paused_until) == ("weekly", None)
    assert gate.has_consent(subscribed, "email", "marketing").reason == "consent"
    assert consent_rows() == before  # the channels did not change, so no consent was recorded


def test_tampered_preferences_link_shows_the_error_page(page: Page, subscribed: Contact) -> None:
    token = gate.generate_unsubscribe_link(subscribed).rsplit("/", 1)[1]
    response = page.goto(f"/preferences/{token[:-3]}xyz")
    assert response is not None
    assert response.status == 422
    expect(page.get_by_role("heading", level=1)).to_have_text("This link does not work")
    expect(page.locator("form")).to_have_count(0)
    assert not Preference.objects.exists()
