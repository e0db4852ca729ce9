"""The consent gate, exhaustively: every channel × purpose × state × suppression × pause."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
import time_machine
from django.core import signing

from storeloop.consent.models import ConsentEvent, ConsentState, ImmutableError
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.core.errors import ValidationError

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
CHANNELS = ["email", "sms", "whatsapp"]
PURPOSES = ["transactional", "marketing"]
STATES = [None, "pending", "granted", "withdrawn"]


@pytest.fixture
def contact(store: Any) -> Contact:
    return Contact.objects.create(store=store, email="ann@example.com", phone="+447700900123")


@pytest.fixture
def gate() -> MessagingConsentManager:
    return MessagingConsentManager()


def put_state(gate: MessagingConsentManager, contact: Contact, channel: str, purpose: str, state: str | None) -> None:
    if state == "pending":
        gate.grant_consent(contact, channel, purpose, source="form", double_opt_in=True, occurred_at=NOW)
    elif state == "granted":
        gate.grant_consent(contact, channel, purpose, source="checkout", occurred_at=NOW)
    elif state == "withdrawn":
        gate.grant_consent(contact, channel, purpose, source="checkout", occurred_at=NOW - dt.timedelta(days=1))
        gate.withdraw_consent(contact, channel, purpose, source="unsubscribe_link", occurred_at=NOW)


def expected(purpose: str, state: str | None, suppressed: bool, paused: bool) -> tuple[bool, str]:
    if suppressed:
        return False, "suppressed:hard_bounce"
    if purpose == "transactional":
        return (False, "withdrawn") if state == "withdrawn" else (True, "contract")
    if state is None:
        return False, "no_consent"
    if state == "pending":
        return False, "pending_confirmation"
    if state == "withdrawn":
        return False, "withdrawn"
    if paused:
        return False, "paused"
    return True, "consent"


@pytest.mark.parametrize(
    ("channel", "purpose", "state", "suppressed", "paused"),
    list(itertools.product(CHANNELS, PURPOSES, STATES, [False, True], [False, True])),
)
def test_consent_matrix(
    gate: MessagingConsentManager, contact: Contact, channel: str, purpose: str, state: str | None,
    suppressed: bool, paused: bool,
) -> None:  # fmt: skip
    put_state(gate, contact, channel, purpose, state)
    if suppressed:
        gate.suppress(contact.store_id, channel, contact.email if channel == "email" else contact.phone, "hard_bounce")
    if paused:
        gate.set_preferences(contact, paused_until=NOW + dt.timedelta(days=7))
    decision = gate.has_consent(contact, channel, purpose, at=NOW)
    assert (decision.allowed, decision.reason) == expected(purpose, state, suppressed, paused)


def test_consent_on_one_channel_or_purpose_never_leaks_to_another(
    gate: MessagingConsentManager, contact: Contact
) -> None:
    gate.grant_consent(contact, "email", "marketing", source="checkout")
    assert gate.has_consent(contact, "email", "marketing").allowed
    assert gate.has_consent(contact, "sms", "marketing").reason == "no_consent"
    assert gate.has_consent(contact, "whatsapp", "marketing").reason == "no_consent"


def test_no_address_no_message(gate: MessagingConsentManager, store: Any) -> None:
    emailless = Contact.objects.create(store=store, phone="+447700900123")
    assert gate.has_consent(emailless, "email", "transactional").reason == "no_address"


def test_a_pause_ends(gate: MessagingConsentManager, contact: Contact) -> None:
    gate.grant_consent(contact, "email", "marketing", source="checkout")
    gate.set_preferences(contact, paused_until=NOW + dt.timedelta(days=7))
    assert gate.has_consent(contact, "email", "marketing", at=NOW).reason == "paused"
    assert gate.has_consent(contact, "email", "marketing", at=NOW + dt.timedelta(days=8)).allowed


def test_double_opt_in_confirmation(gate: MessagingConsentManager, contact: Contact) -> None:
    gate.grant_consent(contact, "email", "marketing", source="newsletter_form", double_opt_in=True,
                       evidence={"ip": "203.0.113.9", "form": "footer v3", "wording_sha256": "ab12"})  # fmt: skip
    assert gate.has_consent(contact, "email", "marketing").reason == "pending_confirmation"
    token = gate.confirmation_token(contact, "email", "marketing")
    gate.confirm_consent(token, evidence={"ip": "203.0.113.9"})
    assert gate.has_consent(contact, "email", "marketing").allowed
    actions = [(e.action, e.source) for e in gate.history(contact)]
    assert actions == [("request", "newsletter_form"), ("confirm", "double_opt_in")]
    assert gate.history(contact)[0].evidence["form"] == "footer v3"  # type: ignore[index]


def test_confirmation_tokens_are_tamper_proof_and_expire(gate: MessagingConsentManager, contact: Contact) -> None:
    gate.grant_consent(contact, "email", "marketing", source="form", double_opt_in=True)
    token = gate.confirmation_token(contact, "email", "marketing")
    with pytest.raises(ValidationError) as bad:
        gate.confirm_consent(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert bad.value.code == "link_invalid"
    with time_machine.travel(dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=8)), pytest.raises(ValidationError) as old:
        gate.confirm_consent(token)
    assert old.value.code == "link_expired"
    assert gate.has_consent(contact, "email", "marketing").reason == "pending_confirmation"


def test_unsubscribe_link_roundtrip_tamper_and_expiry(
    gate: MessagingConsentManager, contact: Contact, settings: Any
) -> None:
    settings.PUBLIC_URL = "https://loop.example"
    gate.grant_consent(contact, "email", "marketing", source="checkout")
    link = gate.generate_unsubscribe_link(contact, "email", "marketing")
    assert link.startswith("https://loop.example/u/")
    token = link.rsplit("/", 1)[1]
    forged = signing.TimestampSigner(salt="something-else").sign_object(
        {"c": contact.pk, "ch": "email", "p": "marketing"}
    )
    with pytest.raises(ValidationError):
        gate.unsubscribe(forged)
    with time_machine.travel(dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=61)), pytest.raises(ValidationError):
        gate.unsubscribe(token)
    assert gate.has_consent(contact, "email", "marketing").allowed
    gate.unsubscribe(token, evidence={"ip": "198.51.100.4"})
    assert gate.has_consent(contact, "email", "marketing").reason == "withdrawn"
    assert gate.has_consent(contact, "email", "transactional").allowed  # unsubscribing marketing only


def test_stop_and_start_keywords(gate: MessagingConsentManager, contact: Contact) -> None:
    gate.grant_consent(contact, "sms", "marketing", source="checkout")
    gate.handle_keyword(contact.store_id, "sms", "+44 7700 900123", "stop")  # Twilio sends E.164
    assert gate.has_consent(contact, "sms", "marketing").reason == "withdrawn"
    assert gate.has_consent(contact, "sms", "transactional").reason == "withdrawn"
    assert gate.has_consent(contact, "email", "transactional").allowed
    gate.handle_keyword(contact.store_id, "sms", "+447700900123", "start")
    assert gate.has_consent(contact, "sms", "marketing").allowed
    assert gate.has_consent(contact, "sms", "transactional").allowed


def test_a_late_arriving_older_event_does_not_override_newer_state(
    gate: MessagingConsentManager, contact: Contact
) -> None:
    gate.withdraw_consent(contact, "email", "marketing", source="unsubscribe_link", occurred_at=NOW)
    gate.grant_consent(contact, "email", "marketing", source="import", occurred_at=NOW - dt.timedelta(days=30))
    assert gate.has_consent(contact, "email", "marketing", at=NOW).reason == "withdrawn"
    assert ConsentEvent.objects.filter(contact=contact).count() == 2


def test_the_ledger_is_append_only(gate: MessagingConsentManager, contact: Contact) -> None:
    event = gate.grant_consent(contact, "email", "marketing", source="checkout")
    event.source = "forged"
    with pytest.raises(ImmutableError):
        event.save()
    with pytest.raises(ImmutableError):
        event.delete()
    assert ConsentEvent.objects.get().source == "checkout"


def test_merged_contacts_answer_for_the_survivor(gate: MessagingConsentManager, contact: Contact, store: Any) -> None:
    other = Contact.objects.create(store=store, email="ann@example.com", merged_into=contact)
    gate.grant_consent(contact, "email", "marketing", source="checkout")
    assert gate.has_consent(other, "email", "marketing").allowed


def test_bad_input_is_refused_and_writes_nothing(gate: MessagingConsentManager, contact: Contact) -> None:
    with pytest.raises(ValidationError):
        gate.grant_consent(contact, "pigeon", "marketing", source="x")
    with pytest.raises(ValidationError):
        gate.grant_consent(contact, "email", "marketing", source="x", lawful_basis="because")
    with pytest.raises(ValidationError):
        gate.suppress(contact.store_id, "email", "not an email", "manual")
    assert not ConsentEvent.objects.exists()
    assert not ConsentState.objects.exists()


def test_the_batch_gate_answers_exactly_like_the_single_one(gate: MessagingConsentManager, store: Any) -> None:
    """``has_consent_many`` (the dispatcher's) over the whole matrix, one contact per cell, plus a
    merged contact and one without a phone: the same decision as ``has_consent`` for each."""
    requests: list[tuple[Contact, str, str]] = []
    cells = itertools.product(CHANNELS, PURPOSES, STATES, [False, True], [False, True])
    for n, (channel, purpose, state, suppressed, paused) in enumerate(cells):
        person = Contact.objects.create(store=store, email=f"p{n}@example.com", phone=f"+4477009{n:05d}")
        put_state(gate, person, channel, purpose, state)
        if suppressed:
            gate.suppress(store.pk, channel, person.email if channel == "email" else person.phone, "hard_bounce")
        if paused:
            gate.set_preferences(person, paused_until=NOW + dt.timedelta(days=7))
        requests.append((person, channel, purpose))
    survivor = requests[0][0]
    requests.append((Contact.objects.create(store=store, email="old@example.com", merged_into=survivor), "email",
                     "marketing"))  # fmt: skip
    requests.append((Contact.objects.create(store=store, email="nophone@example.com"), "sms", "transactional"))
    batch = gate.has_consent_many(requests, at=NOW)
    single = [gate.has_consent(contact, channel, purpose, at=NOW) for contact, channel, purpose in requests]
    assert batch == single
    assert {d.reason for d in batch} == {  # every kind of answer is in there
        "consent", "contract", "no_address", "no_consent", "paused", "pending_confirmation",
        "suppressed:hard_bounce", "withdrawn",
    }  # fmt: skip


def test_start_restores_only_what_stop_took(gate: MessagingConsentManager, store: Any) -> None:
    """START after STOP restores marketing that was granted; from someone who never opted in it
    allows service messages again but is no opt-in to marketing (Twilio counts YES as START)."""
    never = Contact.objects.create(store=store, phone="+447700900999")
    gate.handle_keyword(store.pk, "sms", "+447700900999", "stop")
    gate.handle_keyword(store.pk, "sms", "+447700900999", "start")
    assert gate.has_consent(never, "sms", "transactional").allowed
    assert gate.has_consent(never, "sms", "marketing").reason == "withdrawn"
    gate.handle_keyword(store.pk, "sms", "+447700900999", "start")  # START again, without a STOP before it
    assert gate.has_consent(never, "sms", "marketing").reason == "withdrawn"
    fresh = Contact.objects.create(store=store, phone="+447700900888")
    gate.handle_keyword(store.pk, "sms", "+447700900888", "start")
    assert gate.has_consent(fresh, "sms", "marketing").reason == "no_consent"
