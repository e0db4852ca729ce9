"""The messaging and consent admin: pages load, records are read-only, secrets never appear."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from storeloop.consent.models import ConsentEvent, ConsentState, Preference, Suppression
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.messaging.channels.connections import connect_twilio
from storeloop.messaging.channels.factory import channel_for
from storeloop.messaging.dispatcher import MessageDispatcher
from storeloop.messaging.models import Message, MessageTemplate, MessagingConnection, TemplateVersion
from storeloop.messaging.templates import TemplateRepository

pytestmark = pytest.mark.django_db
AUTH_TOKEN = "twilio-auth-token-7f3c9e"


@pytest.fixture
def admin_client(db: None) -> Client:
    get_user_model().objects.create_superuser("root", "", "a-long-password-1")
    client = Client()
    client.login(username="root", password="a-long-password-1")
    return client


@pytest.fixture
def records(store: Any) -> dict[str, Any]:
    contact = Contact.objects.create(store=store, email="ann@example.com", phone="+447700900123")
    repo = TemplateRepository()
    version = repo.save_template(store, "receipt", "sms", body_text="Thanks {{ contact.first_name }}")
    repo.publish(version)
    message = MessageDispatcher(channel_for).queue_message(
        store=store, contact=contact, channel="sms", purpose="transactional", template=version, dedupe_key="r-1"
    )
    gate = MessagingConsentManager()
    event = gate.grant_consent(contact, "sms", "marketing", source="checkout", evidence={"ip": "203.0.113.7"})
    gate.suppress(store.pk, "email", "bounced@example.com", "hard_bounce")
    gate.set_preferences(contact, frequency="weekly")
    connection = connect_twilio(store_id=store.pk, account_sid="AC" + "a" * 32, auth_token=AUTH_TOKEN,
                                from_number="+15005550006")  # fmt: skip
    return {"template": version.template, "version": version, "message": message, "event": event,
            "state": ConsentState.objects.get(), "suppression": Suppression.objects.get(),
            "preference": Preference.objects.get(), "connection": connection}  # fmt: skip


def test_changelists_and_detail_pages_load(admin_client: Client, records: dict[str, Any]) -> None:
    pages = {
        "messaging/messagetemplate": records["template"],
        "messaging/templateversion": records["version"],
        "messaging/message": records["message"],
        "messaging/messagingconnection": records["connection"],
        "consent/consentevent": records["event"],
        "consent/consentstate": records["state"],
        "consent/suppression": None,
        "consent/preference": records["preference"],
    }
    for model, obj in pages.items():
        assert admin_client.get(f"/admin/{model}/").status_code == 200, model
        if obj is not None:
            assert admin_client.get(f"/admin/{model}/{obj.pk}/change/").status_code == 200, model
    for params in ({"status__exact": "queued"}, {"channel__exact": "sms"}, {"q": str(records["message"].pk)}):
        assert admin_client.get("/admin/messaging/message/", params).status_code == 200
    assert admin_client.get("/admin/consent/suppression/add/").status_code == 200


def test_connection_secrets_never_appear(admin_client: Client, records: dict[str, Any]) -> None:
    connection = records["connection"]
    listing = admin_client.get("/admin/messaging/messagingconnection/").content.decode()
    detail = admin_client.get(f"/admin/messaging/messagingconnection/{connection.pk}/change/").content.decode()
    assert AUTH_TOKEN not in listing
    assert AUTH_TOKEN not in detail
    assert "+15005550006" in detail  # the non-secret settings are shown


def test_connection_rate_and_active_are_editable_and_checked(admin_client: Client, records: dict[str, Any]) -> None:
    connection = records["connection"]
    url = f"/admin/messaging/messagingconnection/{connection.pk}/change/"
    refused = admin_client.post(url, {"messages_per_second": "0", "active": "on"})
    assert refused.status_code == 200
    assert "must be above 0" in refused.content.decode()
    assert MessagingConnection.objects.get().messages_per_second == 10.0
    saved = admin_client.post(url, {"messages_per_second": "2.5"})
    assert saved.status_code == 302
    stored = MessagingConnection.objects.get()
    assert (stored.messages_per_second, stored.active) == (2.5, False)
    assert stored.credentials == connection.credentials  # the secrets were not touched


def test_a_connections_account_rate_is_editable_checked_and_kept_in_its_settings(
    admin_client: Client, records: dict[str, Any]
) -> None:
    url = f"/admin/messaging/messagingconnection/{records['connection'].pk}/change/"
    before = MessagingConnection.objects.get().settings
    refused = admin_client.post(url, {"messages_per_second": "10", "account_messages_per_second": "-2"})
    assert "must be above 0" in refused.content.decode()
    assert MessagingConnection.objects.get().settings == before
    saved = admin_client.post(url, {"messages_per_second": "10", "account_messages_per_second": "25", "active": "on"})
    assert saved.status_code == 302
    assert MessagingConnection.objects.get().settings == {**before, "account_messages_per_second": 25.0}
    shown = admin_client.get(url).content.decode()
    assert 'name="account_messages_per_second" value="25.0"' in shown
    cleared = admin_client.post(url, {"messages_per_second": "10", "account_messages_per_second": "", "active": "on"})
    assert cleared.status_code == 302
    assert MessagingConnection.objects.get().settings == before


def test_a_connections_marketing_cap_and_quiet_hours_are_editable_and_checked(
    admin_client: Client, records: dict[str, Any]
) -> None:
    url = f"/admin/messaging/messagingconnection/{records['connection'].pk}/change/"
    half = admin_client.post(url, {"messages_per_second": "10", "quiet_hours_start": "22:00"})
    assert "Quiet hours need both a start and an end" in half.content.decode()
    negative = admin_client.post(url, {"messages_per_second": "10", "marketing_cap_hours": "-1"})
    assert "must be between 0 and 2160" in negative.content.decode()
    stored = MessagingConnection.objects.get()
    assert (stored.marketing_cap_hours, stored.quiet_hours_start, stored.quiet_hours_end) == (None, None, None)
    form = {"messages_per_second": "10", "marketing_cap_hours": "12", "quiet_hours_start": "22:00",
            "quiet_hours_end": "07:00", "active": "on"}  # fmt: skip
    saved = admin_client.post(url, form)
    assert saved.status_code == 302
    stored = MessagingConnection.objects.get()
    assert (stored.marketing_cap_hours, stored.quiet_hours_start, stored.quiet_hours_end) == (
        12.0,
        dt.time(22),
        dt.time(7),
    )


def test_the_ledger_and_messages_cannot_be_changed_or_deleted(admin_client: Client, records: dict[str, Any]) -> None:
    event, message = records["event"], records["message"]
    assert admin_client.get("/admin/consent/consentevent/add/").status_code == 403
    assert admin_client.get(f"/admin/consent/consentevent/{event.pk}/delete/").status_code == 403
    bulk_delete = {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
    bulk = admin_client.post("/admin/consent/consentevent/", bulk_delete)
    assert bulk.status_code in (200, 302)
    assert ConsentEvent.objects.filter(pk=event.pk).exists()
    admin_client.post(f"/admin/messaging/message/{message.pk}/change/", {"status": "sent"})
    assert Message.objects.get().status == "queued"
    admin_client.post(f"/admin/messaging/templateversion/{records['version'].pk}/change/", {"body_text": "x"})
    assert TemplateVersion.objects.get().body_text == "Thanks {{ contact.first_name }}"
    assert admin_client.get("/admin/messaging/messagetemplate/add/").status_code == 403
    assert MessageTemplate.objects.count() == 1


def test_suppressions_are_added_normalised_and_checked(admin_client: Client, store: Any) -> None:
    add = "/admin/consent/suppression/add/"
    bad = admin_client.post(add, {"store": store.pk, "channel": "sms", "address": "call me", "reason": "manual"})
    assert bad.status_code == 200
    assert "not a valid sms address" in bad.content.decode()
    assert not Suppression.objects.exists()
    entry = {"store": store.pk, "channel": "email", "address": " Ann@Example.COM", "reason": "manual"}
    good = admin_client.post(add, {**entry, "detail": "asked by phone"})
    assert good.status_code == 302
    assert list(Suppression.objects.values_list("address", "reason")) == [("ann@example.com", "manual")]
    again = admin_client.post(add, {**entry, "address": "ann@example.com"})
    assert again.status_code == 200
    assert "already suppressed" in again.content.decode()
    assert Suppression.objects.count() == 1


def test_anonymous_is_sent_to_login(records: dict[str, Any]) -> None:
    for path in ("/admin/messaging/message/", "/admin/consent/consentevent/", "/admin/consent/suppression/"):
        response = Client().get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_a_new_version_is_written_validated_published_and_rolled_back(
    admin_client: Client, records: dict[str, Any], store: Any
) -> None:
    add = "/admin/messaging/templateversion/add/"
    page = admin_client.get(add)
    assert page.status_code == 200
    assert 'name="body_text"' in page.content.decode()
    form = {"store": store.pk, "key": "receipt", "channel": "sms", "locale": "en",
            "variables_": ["contact", "order", "store"]}  # fmt: skip

    bad = admin_client.post(add, {**form, "body_text": "Hi\n{{ secret }}"})
    assert bad.status_code == 200
    assert "body_text, line 2: unknown variable &#x27;secret&#x27;" in bad.content.decode()
    probe = admin_client.post(add, {**form, "body_text": "{{ ''|attr('__class__') }}"})
    assert "is not allowed in templates" in probe.content.decode()
    assert TemplateVersion.objects.count() == 1  # nothing saved

    good = admin_client.post(add, {**form, "body_text": "Thank you, {{ contact.first_name }}!"})
    assert good.status_code == 302
    version = TemplateVersion.objects.get(number=2)
    assert (version.body_text, version.created_by, version.template_id) == (
        "Thank you, {{ contact.first_name }}!", "admin:root", records["template"].pk
    )  # fmt: skip
    template = MessageTemplate.objects.get()
    assert template.published_id == records["version"].pk  # a new version is a draft until published

    changelist = "/admin/messaging/templateversion/"
    both = admin_client.post(changelist, {"action": "publish", "_selected_action": [records["version"].pk, version.pk]})
    assert both.status_code == 302
    template.refresh_from_db()
    assert template.published_id == records["version"].pk  # two versions of one template: refused
    admin_client.post(changelist, {"action": "publish", "_selected_action": [version.pk]})
    template.refresh_from_db()
    assert template.published_id == version.pk
    admin_client.post(changelist, {"action": "publish", "_selected_action": [records["version"].pk]})  # rollback
    template.refresh_from_db()
    assert template.published_id == records["version"].pk
    assert TemplateVersion.objects.count() == 2


def test_unknown_messages_can_be_sent_again_from_the_admin(admin_client: Client, records: dict[str, Any]) -> None:
    message = records["message"]
    changelist = "/admin/messaging/message/"
    admin_client.post(changelist, {"action": "resend", "_selected_action": [message.pk]})
    assert Message.objects.get(pk=message.pk).status == "queued"  # queued, not unknown: left as it was
    Message.objects.filter(pk=message.pk).update(status="unknown")
    response = admin_client.post(changelist, {"action": "resend", "_selected_action": [message.pk]}, follow=True)
    assert "Queued 1 message(s) again" in response.content.decode()
    row = Message.objects.get(pk=message.pk)
    assert (row.status, row.reason) == ("queued", "sent again by an operator: may arrive twice")
