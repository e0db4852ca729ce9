"""Double opt-in for marketing email: the request, the confirmation email, the confirmation page."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import time_machine
from conftest import ApiClient
from django.db import connections
from django.test import Client
from tests.drain import drain

from storeloop.consent.double_opt_in import DEFAULT_SUBJECT, RESEND_AFTER
from storeloop.consent.models import ConsentEvent, ConsentState
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.core.errors import Conflict, ValidationError
from storeloop.integrations.smtp.fake import FakeSmtpServer
from storeloop.messaging.channels.connections import connect_smtp
from storeloop.messaging.channels.factory import close_channels
from storeloop.messaging.models import Message, MessageTemplate, TemplateVersion
from storeloop.messaging.templates import TemplateRepository
from storeloop.stores.models import ApiKey

gate = MessagingConsentManager()
EVIDENCE = {"ip": "203.0.113.7", "where": "https://shop.example/newsletter", "wording": "Send me news by email"}
LINK = re.compile(r"https://loop\.example/confirm/[A-Za-z0-9_:.\-]+")


@pytest.fixture(autouse=True)
def _public_url(settings: Any) -> Iterator[None]:
    settings.PUBLIC_URL = "https://loop.example"
    yield
    close_channels()


@pytest.fixture
def ann(store: Any) -> Contact:
    return Contact.objects.create(store=store, email="ann@example.com", first_name="Ann")


def link_of(message: Message) -> str:
    url: str = message.context["custom"]["confirm_url"]
    return urlsplit(url).path


def request(contact: Contact, **kwargs: Any) -> Any:
    return gate.request_double_opt_in(contact, source="newsletter_form", evidence={"ip": "203.0.113.7"}, **kwargs)


def ledger(contact: Contact) -> list[tuple[str, str]]:
    return [(e.action, e.source) for e in gate.history(contact)]


# --- end to end: API → worker → fake SMTP → confirmation page ----------------------------------


@pytest.mark.django_db(transaction=True)  # the real worker and the SMTP channel's threads need committed rows
def test_one_email_with_the_link_and_following_it_confirms(api: ApiClient, store: Any, ann: Contact) -> None:
    with FakeSmtpServer() as smtp:
        connect_smtp(store_id=store.pk, host=smtp.host, port=smtp.port, security="none",
                     from_addr="shop@shop.example", messages_per_second=1000)  # fmt: skip
        url = f"/api/v1/contacts/{ann.pk}/consent/double-opt-in"
        first = api.post(url, {"source": "newsletter_form", "evidence": EVIDENCE})
        assert first.status_code == 202
        body = first.json()
        assert (body["outcome"], body["state"]["status"], body["event"]["action"]) == ("queued", "pending", "request")
        assert body["can_send"] == {"channel": "email", "purpose": "marketing", "allowed": False,
                                    "reason": "pending_confirmation"}  # fmt: skip
        again = api.post(url, {"source": "newsletter_form", "evidence": EVIDENCE})  # the double click
        assert again.status_code == 200
        assert (again.json()["outcome"], again.json()["message_id"], again.json()["event"]["id"]) == (
            "already_queued", body["message_id"], body["event"]["id"],
        )  # fmt: skip
        drain()

        assert len(smtp.messages) == 1
        received = smtp.messages[0]
        assert received.rcpt_tos == ("ann@example.com",)
        assert str(received.message["Subject"]) == "Please confirm your subscription to Test shop"
        text = received.message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        html = received.message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
        links = LINK.findall(text)
        assert len(links) == 1
        assert f'href="{links[0]}"' in html
        assert received.message["List-Unsubscribe"] is None  # transactional: no unsubscribe header
    message = Message.objects.get()
    assert (message.pk, message.purpose, message.status) == (body["message_id"], "transactional", "sent")
    assert ledger(ann) == [("request", "newsletter_form")]

    path = urlsplit(links[0]).path
    page = Client().get(path)
    assert page.status_code == 200
    assert "Confirm your subscription" in page.content.decode()
    assert 'method="post"' in page.content.decode()
    assert "a…@example.com" in page.content.decode()
    assert gate.has_consent(ann, "email", "marketing").reason == "pending_confirmation"

    done = Client().post(path, headers={"User-Agent": "Mail/1.0"})
    assert done.status_code == 200
    assert "Thank you, you are subscribed" in done.content.decode()
    assert gate.has_consent(ann, "email", "marketing").allowed
    request_event, confirm_event = gate.history(ann)
    assert ledger(ann) == [("request", "newsletter_form"), ("confirm", "double_opt_in")]
    assert request_event.evidence == {**EVIDENCE, "via": f"api-key:{ApiKey.objects.get().prefix}"}
    assert confirm_event.evidence == {"ip": "127.0.0.1", "user_agent": "Mail/1.0", "request_event": request_event.pk}
    assert confirm_event.occurred_at >= request_event.occurred_at

    # Following it again changes nothing; the page says it is done.
    assert Client().post(path).status_code == 200
    assert "already confirmed" in Client().get(path).content.decode()
    assert ConsentEvent.objects.count() == 2
    template = MessageTemplate.objects.get(store=store, key="double-opt-in", channel="email")
    assert (template.published_id, template.versions.count()) == (message.template_id, 1)


def at_once(action: Callable[[], Any], times: int = 4) -> list[BaseException]:
    """Run ``action`` in ``times`` threads released together; returns what they raised."""
    barrier = threading.Barrier(times)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            action()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.django_db(transaction=True)
def test_simultaneous_requests_and_clicks_record_and_send_once(store: Any, ann: Contact) -> None:
    assert at_once(lambda: request(ann)) == []
    message = Message.objects.get()
    assert ledger(ann) == [("request", "newsletter_form")]
    assert at_once(lambda: Client().post(link_of(message))) == []
    assert ledger(ann) == [("request", "newsletter_form"), ("confirm", "double_opt_in")]
    assert gate.has_consent(ann, "email", "marketing").allowed


# --- the request -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_default_template_is_saved_once_per_store_as_a_published_version(store: Any, ann: Contact) -> None:
    bob = Contact.objects.create(store=store, email="bob@example.com")
    first, second = request(ann), request(bob)
    version = TemplateVersion.objects.get()
    assert (first.message.template_id, second.message.template_id) == (version.pk, version.pk)
    assert (version.number, version.created_by, version.subject) == (1, "storeloop", DEFAULT_SUBJECT)
    assert version.template.published_id == version.pk
    assert "{{ custom.confirm_url }}" in version.body_text


@pytest.mark.django_db
def test_a_double_click_queues_one_email_and_a_later_request_another(store: Any, ann: Contact) -> None:
    first = request(ann)
    second = request(ann)
    assert (first.outcome, second.outcome) == ("queued", "already_queued")
    assert (second.event.pk, second.message.pk) == (first.event.pk, first.message.pk)
    assert Message.objects.count() == 1
    assert first.message.dedupe_key == f"double-opt-in:{first.event.pk}"
    later_on = first.event.occurred_at + RESEND_AFTER + dt.timedelta(seconds=1)
    with time_machine.travel(later_on):
        later = request(ann)
    assert later.outcome == "queued"
    assert later.event.pk != first.event.pk
    assert Message.objects.count() == 2
    assert ledger(ann) == [("request", "newsletter_form"), ("request", "newsletter_form")]
    # Both links work: the older one confirms the pending state.
    with time_machine.travel(later_on + dt.timedelta(minutes=1)):
        assert Client().post(link_of(first.message)).status_code == 200
    assert gate.has_consent(ann, "email", "marketing").allowed


@pytest.mark.django_db
def test_a_contact_who_already_granted_gets_no_email(store: Any, ann: Contact) -> None:
    grant = gate.grant_consent(ann, "email", "marketing", source="checkout")
    result = request(ann)
    assert (result.outcome, result.event.pk, result.message) == ("already_granted", grant.pk, None)
    assert not Message.objects.exists()
    assert ConsentEvent.objects.count() == 1


@pytest.mark.django_db
def test_the_stores_published_template_is_used(store: Any, ann: Contact) -> None:
    repo = TemplateRepository()
    own = repo.save_template(store, "double-opt-in", "email", subject="Bitte bestätigen",
                             body_text="Hier klicken: {{ custom.confirm_url }}", variables=["custom"])  # fmt: skip
    repo.publish(own)
    assert request(ann).message.template_id == own.pk
    assert TemplateVersion.objects.count() == 1


@pytest.mark.django_db
def test_a_store_template_without_the_link_is_refused_and_nothing_is_written(store: Any, ann: Contact) -> None:
    repo = TemplateRepository()
    repo.publish(repo.save_template(store, "double-opt-in", "email", subject="Hi", body_text="No link here"))
    with pytest.raises(ValidationError) as refused:
        request(ann)
    assert refused.value.code == "template_missing_confirm_link"
    assert "{{ custom.confirm_url }}" in refused.value.message
    assert not ConsentEvent.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_an_address_we_may_not_email_is_refused_and_nothing_is_written(store: Any, ann: Contact) -> None:
    gate.suppress(store.pk, "email", "ann@example.com", "hard_bounce")
    with pytest.raises(Conflict) as blocked:
        request(ann)
    assert (blocked.value.code, blocked.value.details) == ("confirmation_blocked", {"reason": "suppressed:hard_bounce"})
    nobody = Contact.objects.create(store=store, phone="+447700900123")
    with pytest.raises(ValidationError) as no_address:
        request(nobody)
    assert no_address.value.code == "no_address"
    with pytest.raises(ValidationError) as sms:
        gate.request_double_opt_in(ann, "sms", evidence={"ip": "203.0.113.7"})
    assert sms.value.code == "double_opt_in_unsupported"
    assert not ConsentEvent.objects.exists()
    assert not Message.objects.exists()
    assert not MessageTemplate.objects.exists()


# --- the confirmation page ---------------------------------------------------------------------


@pytest.mark.django_db
def test_get_shows_a_button_and_confirms_nothing(store: Any, ann: Contact) -> None:
    path = link_of(request(ann).message)
    for _ in range(3):  # a mail scanner prefetching the link, several times
        page = Client().get(path)
        assert page.status_code == 200
        assert '<button type="submit"' in page.content.decode()
    assert gate.has_consent(ann, "email", "marketing").reason == "pending_confirmation"
    assert ledger(ann) == [("request", "newsletter_form")]


def _tampered(path: str) -> str:
    return path[:-2] + ("AA" if not path.endswith("AA") else "BB")


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_tampered_link_is_a_400_page_and_changes_nothing(store: Any, ann: Contact, method: str) -> None:
    path = link_of(request(ann).message)
    response = getattr(Client(), method)(_tampered(path))
    assert response.status_code == 400
    assert "This link does not work" in response.content.decode()
    assert "this link is not valid" in response.content.decode()
    assert gate.has_consent(ann, "email", "marketing").reason == "pending_confirmation"
    assert ledger(ann) == [("request", "newsletter_form")]


@pytest.mark.django_db
def test_a_link_from_another_salt_is_refused(store: Any, ann: Contact) -> None:
    request(ann)
    unsubscribe_token = gate.generate_unsubscribe_link(ann).rsplit("/", 1)[1]
    assert Client().post(f"/confirm/{unsubscribe_token}").status_code == 400
    assert gate.has_consent(ann, "email", "marketing").reason == "pending_confirmation"


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
def test_an_expired_link_is_a_400_page_and_changes_nothing(store: Any, ann: Contact, method: str) -> None:
    path = link_of(request(ann).message)
    with time_machine.travel(dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=7, minutes=1)):
        response = getattr(Client(), method)(path)
    assert response.status_code == 400
    assert "this link has expired" in response.content.decode()
    assert gate.has_consent(ann, "email", "marketing").reason == "pending_confirmation"
    assert ledger(ann) == [("request", "newsletter_form")]


@pytest.mark.django_db
def test_a_link_sent_to_an_old_address_does_not_confirm_the_new_one(store: Any, ann: Contact) -> None:
    path = link_of(request(ann).message)
    Contact.objects.filter(pk=ann.pk).update(email="ann.new@example.com")
    response = Client().post(path)
    assert response.status_code == 400
    assert "no longer use" in response.content.decode()
    assert gate.has_consent(ann, "email", "marketing").reason == "pending_confirmation"


@pytest.mark.django_db
def test_a_withdrawal_after_the_request_wins_over_a_late_click(store: Any, ann: Contact) -> None:
    path = link_of(request(ann).message)
    gate.withdraw_consent(ann, "email", "marketing", source="phone_call")
    response = Client().post(path)
    assert response.status_code == 400
    assert "no pending subscription" in response.content.decode()
    assert gate.has_consent(ann, "email", "marketing").reason == "withdrawn"
    assert [a for a, _ in ledger(ann)] == ["request", "withdraw"]


@pytest.mark.django_db
def test_confirming_twice_records_one_confirmation(store: Any, ann: Contact) -> None:
    token = link_of(request(ann).message).rsplit("/", 1)[1]
    first = gate.confirm_consent(token, evidence={"ip": "198.51.100.1"})
    second = gate.confirm_consent(token, evidence={"ip": "198.51.100.2"})
    assert first.pk == second.pk
    assert ConsentState.objects.get().last_event_id == first.pk
    assert [a for a, _ in ledger(ann)] == ["request", "confirm"]


# --- the API -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_answers_already_granted_without_an_email(api: ApiClient, ann: Contact) -> None:
    gate.grant_consent(ann, "email", "marketing", source="checkout")
    response = api.post(f"/api/v1/contacts/{ann.pk}/consent/double-opt-in", {"evidence": EVIDENCE})
    assert response.status_code == 200
    body = response.json()
    assert (body["outcome"], body["message_id"], body["event"]["action"]) == ("already_granted", None, "grant")
    assert body["can_send"]["allowed"] is True
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_the_api_request_through_the_consent_change_sends_the_email_too(api: ApiClient, ann: Contact) -> None:
    payload = {"action": "grant", "channel": "email", "purpose": "marketing", "source": "checkout",
               "double_opt_in": True, "evidence": EVIDENCE}  # fmt: skip
    response = api.post(f"/api/v1/contacts/{ann.pk}/consent", payload)
    assert response.status_code == 201
    assert (response.json()["event"]["action"], response.json()["state"]["status"]) == ("request", "pending")
    message = Message.objects.get()
    assert (message.contact_id, message.purpose, message.dedupe_key) == (
        ann.pk, "transactional", f"double-opt-in:{response.json()['event']['id']}",
    )  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "payload", "status", "code"),
    [
        ("double-opt-in", {}, 422, "evidence_required"),
        ("double-opt-in", {"evidence": {}}, 422, "evidence_required"),
        ("double-opt-in", {"evidence": EVIDENCE, "channel": "sms"}, 422, "validation_error"),
        ("double-opt-in", {"evidence": EVIDENCE, "source": "Bad Source!"}, 422, "validation_error"),
        ("double-opt-in", {"evidence": EVIDENCE, "extra": 1}, 422, "validation_error"),
        ("", {"channel": "sms"}, 422, "invalid_consent_change"),
        ("", {"occurred_at": "2026-01-01T00:00:00Z"}, 422, "invalid_consent_change"),
        ("", {"lawful_basis": "legitimate_interest"}, 422, "invalid_consent_change"),
    ],
)
def test_bad_double_opt_in_requests_are_refused_and_write_nothing(
    api: ApiClient, ann: Contact, path: str, payload: dict[str, Any], status: int, code: str
) -> None:
    if path:
        response = api.post(f"/api/v1/contacts/{ann.pk}/consent/{path}", payload)
    else:
        change = {"action": "grant", "channel": "email", "purpose": "marketing", "source": "form",
                  "double_opt_in": True, "evidence": EVIDENCE, **payload}  # fmt: skip
        response = api.post(f"/api/v1/contacts/{ann.pk}/consent", change)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert not ConsentEvent.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_a_suppressed_address_is_409_through_the_api(api: ApiClient, store: Any, ann: Contact) -> None:
    gate.suppress(store.pk, "email", "ann@example.com", "complaint")
    response = api.post(f"/api/v1/contacts/{ann.pk}/consent/double-opt-in", {"evidence": EVIDENCE})
    assert response.status_code == 409
    assert response.json() == {
        "code": "confirmation_blocked",
        "message": "the confirmation email cannot be sent to this contact (suppressed:complaint)",
        "details": {"reason": "suppressed:complaint"},
    }
    assert not ConsentEvent.objects.exists()


@pytest.mark.django_db
def test_another_stores_contact_is_404_and_anonymous_is_401(api: ApiClient, other_store: Any) -> None:
    theirs = Contact.objects.create(store=other_store, email="bob@example.com")
    url = f"/api/v1/contacts/{theirs.pk}/consent/double-opt-in"
    response = api.post(url, {"evidence": EVIDENCE})
    assert (response.status_code, response.json()["code"]) == (404, "contact_not_found")
    anonymous = Client().post(url, {"evidence": EVIDENCE}, content_type="application/json")
    assert anonymous.status_code == 401
    assert not ConsentEvent.objects.exists()
    assert not Message.objects.exists()
