"""Unsubscribe page, one-click POST and the preference center, through HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from storeloop.consent.models import ConsentEvent, ConsentState, Preference
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.messaging.models import Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscribed(store: Any) -> Contact:
    contact = Contact.objects.create(store=store, email="ann@example.com", phone="+447700900123")
    MessagingConsentManager().grant_consent(contact, "email", "marketing", source="checkout")
    return contact


def token_of(contact: Contact) -> str:
    return MessagingConsentManager().generate_unsubscribe_link(contact).rsplit("/", 1)[1]


def test_get_shows_the_question_and_changes_nothing(subscribed: Contact) -> None:
    response = Client().get(f"/u/{token_of(subscribed)}")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Unsubscribe from marketing email?" in body
    assert "ann@example.com" not in body  # masked
    assert "a…@example.com" in body
    assert MessagingConsentManager().has_consent(subscribed, "email", "marketing").allowed


def test_one_click_post_unsubscribes_without_login_or_csrf(subscribed: Contact) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        f"/u/{token_of(subscribed)}", "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    assert MessagingConsentManager().has_consent(subscribed, "email", "marketing").reason == "withdrawn"
    event = ConsentEvent.objects.filter(action="withdraw").get()
    assert event.source == "unsubscribe_link"
    assert event.evidence["ip"] == "127.0.0.1"


def test_tampered_link_is_refused_and_changes_nothing(subscribed: Contact) -> None:
    token = token_of(subscribed)
    response = Client().post(f"/u/{token[:-3]}xyz")
    assert response.status_code == 422
    assert "not valid" in response.content.decode()
    assert MessagingConsentManager().has_consent(subscribed, "email", "marketing").allowed


def test_preference_center_changes_channels_frequency_and_pause(subscribed: Contact) -> None:
    token = token_of(subscribed)
    page = Client().get(f"/preferences/{token}")
    assert page.status_code == 200
    assert 'name="marketing_email" checked' in page.content.decode()
    response = Client().post(
        f"/preferences/{token}", {"marketing_sms": "on", "frequency": "weekly", "paused_until": "2030-01-01"}
    )
    assert response.status_code == 200
    gate = MessagingConsentManager()
    assert gate.has_consent(subscribed, "email", "marketing").reason == "withdrawn"
    assert gate.has_consent(subscribed, "sms", "marketing").reason == "paused"
    preference = Preference.objects.get(contact=subscribed)
    assert (preference.frequency, preference.paused_until.date().isoformat()) == ("weekly", "2030-01-01")
    assert set(ConsentEvent.objects.filter(source="preference_center").values_list("channel", "action")) == {
        ("email", "withdraw"),
        ("sms", "grant"),
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("frequency", "daily", "choose one of the listed frequencies"),
        ("paused_until", "not-a-date", "pause date as a date"),
    ],
)
def test_preference_center_refuses_a_bad_field_and_changes_nothing(
    subscribed: Contact, field: str, value: str, message: str
) -> None:
    gate = MessagingConsentManager()
    token = token_of(subscribed)
    Client().post(f"/preferences/{token}", {"marketing_email": "on", "paused_until": "2030-01-01"})
    events_before = ConsentEvent.objects.count()
    form = {"marketing_sms": "on", "frequency": "weekly", "paused_until": "2031-05-05", field: value}
    response = Client().post(f"/preferences/{token}", form)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert "Nothing was changed" in response.content.decode()
    assert ConsentEvent.objects.count() == events_before  # no half-applied form
    assert gate.has_consent(subscribed, "sms", "marketing").reason == "no_consent"
    preference = Preference.objects.get(contact=subscribed)
    assert preference.paused_until is not None
    assert preference.paused_until.date().isoformat() == "2030-01-01"


def test_unticking_withdraws_the_recorded_consent_of_a_suppressed_address(subscribed: Contact) -> None:
    gate = MessagingConsentManager()
    gate.suppress(subscribed.store_id, "email", subscribed.email, "hard_bounce")
    token = token_of(subscribed)
    assert 'name="marketing_email" checked' in Client().get(f"/preferences/{token}").content.decode()
    assert Client().post(f"/preferences/{token}", {"frequency": "any"}).status_code == 200
    # Were the suppression lifted later, marketing must not resume against the person's choice.
    assert ConsentState.objects.get(contact=subscribed, channel="email", purpose="marketing").status == "withdrawn"
    assert list(ConsentEvent.objects.filter(source="preference_center").values_list("channel", "action")) == [
        ("email", "withdraw")
    ]


def test_ticking_e_mail_from_a_text_message_link_asks_for_double_opt_in(store: Any) -> None:
    contact = Contact.objects.create(store=store, email="bo@example.com", phone="+447700900124")
    gate = MessagingConsentManager()
    token = gate.generate_unsubscribe_link(contact, "sms").rsplit("/", 1)[1]
    response = Client().post(f"/preferences/{token}", {"marketing_email": "on"})
    assert response.status_code == 200
    assert "waiting for you to confirm" in response.content.decode()
    assert ConsentState.objects.get(contact=contact, channel="email", purpose="marketing").status == "pending"
    assert not gate.has_consent(contact, "email", "marketing").allowed
    assert list(ConsentEvent.objects.filter(contact=contact).values_list("channel", "action", "source")) == [
        ("email", "request", "preference_center")
    ]
    confirmation = Message.objects.get(contact=contact)
    assert (confirmation.channel, confirmation.purpose) == ("email", "transactional")
    # Unticking the pending box withdraws the request.
    Client().post(f"/preferences/{token}", {})
    assert ConsentState.objects.get(contact=contact, channel="email", purpose="marketing").status == "withdrawn"


def test_service_messages_per_channel_can_be_turned_off_and_on(subscribed: Contact) -> None:
    gate = MessagingConsentManager()
    token = token_of(subscribed)
    page = Client().get(f"/preferences/{token}").content.decode()
    assert 'name="service_email" checked' in page
    assert 'name="service_sms" checked' in page
    form = {"marketing_email": "on", "service_shown": "1", "service_sms": "on", "service_whatsapp": "on"}
    assert Client().post(f"/preferences/{token}", form).status_code == 200
    assert gate.has_consent(subscribed, "email", "transactional").reason == "withdrawn"
    assert gate.has_consent(subscribed, "sms", "transactional").allowed
    assert gate.has_consent(subscribed, "email", "marketing").allowed  # left as it was
    assert list(
        ConsentEvent.objects.filter(source="preference_center").values_list("channel", "purpose", "action")
    ) == [("email", "transactional", "withdraw")]
    assert 'name="service_email" >' in Client().get(f"/preferences/{token}").content.decode()
    Client().post(f"/preferences/{token}", {**form, "service_email": "on"})
    assert gate.has_consent(subscribed, "email", "transactional").allowed
    restored = ConsentState.objects.get(contact=subscribed, channel="email", purpose="transactional")
    assert (restored.status, restored.lawful_basis) == ("granted", "contract")
