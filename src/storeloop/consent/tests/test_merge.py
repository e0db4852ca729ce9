"""Contact merges carry consent by the rules of ``consent.merge`` (one test per rule)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from conftest import ApiClient
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storeloop.consent.models import ConsentEvent, ConsentState, Preference
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.contacts.services import merge_contacts
from storeloop.core.errors import ValidationError

pytestmark = pytest.mark.django_db
gate = MessagingConsentManager()
# In the past, so the merge's own ledger entries (written "now") come after every event here.
T0 = dt.datetime.now(tz=dt.UTC).replace(microsecond=0) - dt.timedelta(days=30)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def merge(store: Any, source: Contact, target: Contact) -> None:
    merge_contacts(store=store, source_id=source.pk, target_id=target.pk, reason="same person", actor="test")
    target.refresh_from_db()


def state(contact: Contact, channel: str = "email", purpose: str = "marketing") -> str | None:
    return ConsentState.objects.filter(contact=contact, channel=channel, purpose=purpose).values_list(
        "status", flat=True
    ).first()  # fmt: skip


def merge_events(contact: Contact) -> list[dict[str, Any]]:
    return [e.evidence for e in ConsentEvent.objects.filter(contact=contact, action="merge").order_by("id")]


@pytest.fixture
def ann(store: Any) -> Contact:
    return Contact.objects.create(store=store, email="ann@example.com", phone="+447700900123")


@pytest.fixture
def dup(store: Any) -> Contact:
    """The same person as ``ann``, imported twice (same address)."""
    return Contact.objects.create(store=store, email="ann@example.com")


# Rule 1: the newest deciding event across both contacts wins.


def test_a_withdrawal_on_the_merged_contact_after_the_survivors_grant_is_kept(
    store: Any, ann: Contact, dup: Contact
) -> None:
    gate.grant_consent(ann, "email", "marketing", source="checkout", occurred_at=at(0))
    gate.grant_consent(dup, "email", "marketing", source="checkout", occurred_at=at(1))
    withdrawal = gate.withdraw_consent(dup, "email", "marketing", source="unsubscribe_link", occurred_at=at(5))
    merge(store, dup, ann)
    assert gate.has_consent(ann, "email", "marketing").reason == "withdrawn"
    assert ConsentState.objects.get(contact=ann).last_event_id == withdrawal.pk
    assert merge_events(ann) == [{
        "merged_from_contact": dup.pk, "actor": "test", "before": "granted", "merged_status": "withdrawn",
        "merged_event": withdrawal.pk, "suppression_reason": None, "after": "withdrawn", "decided_by": "source",
        "deciding_event": withdrawal.pk,
    }]  # fmt: skip


def test_a_withdrawal_on_the_survivor_after_the_merged_contacts_grant_is_kept(
    store: Any, ann: Contact, dup: Contact
) -> None:
    gate.grant_consent(dup, "email", "marketing", source="checkout", occurred_at=at(0))
    gate.withdraw_consent(ann, "email", "marketing", source="phone_call", occurred_at=at(5))
    merge(store, dup, ann)
    assert gate.has_consent(ann, "email", "marketing").reason == "withdrawn"
    assert merge_events(ann)[0]["decided_by"] == "target"


def test_a_grant_after_the_other_contacts_withdrawal_stands(store: Any, ann: Contact, dup: Contact) -> None:
    gate.withdraw_consent(ann, "email", "marketing", source="unsubscribe_link", occurred_at=at(0))
    grant = gate.grant_consent(dup, "email", "marketing", source="newsletter_form", occurred_at=at(30))
    merge(store, dup, ann)
    assert gate.has_consent(ann, "email", "marketing").allowed
    assert ConsentState.objects.get(contact=ann).last_event_id == grant.pk


# Rule 2: ties go to the more restrictive state.


def test_at_the_same_instant_the_more_restrictive_state_wins(store: Any, ann: Contact, dup: Contact) -> None:
    gate.grant_consent(ann, "email", "marketing", source="checkout", occurred_at=at(0))
    gate.withdraw_consent(dup, "email", "marketing", source="import", occurred_at=at(0))
    gate.grant_consent(ann, "sms", "marketing", source="checkout", occurred_at=at(0))
    gate.grant_consent(dup, "sms", "marketing", source="form", double_opt_in=True, occurred_at=at(0))
    merge(store, dup, ann)
    assert (state(ann), state(ann, "sms")) == ("withdrawn", "pending")


# Rule 3: a grant counts for the address it was given for; a withdrawal always counts.


def test_a_grant_for_another_address_is_evidence_and_not_carried(store: Any, ann: Contact) -> None:
    work = Contact.objects.create(store=store, email="ann@work.example")
    grant = gate.grant_consent(work, "email", "marketing", source="checkout", occurred_at=at(0))
    merge(store, work, ann)
    assert gate.has_consent(ann, "email", "marketing").reason == "no_consent"
    assert state(ann) is None
    assert merge_events(ann) == [{
        "merged_from_contact": work.pk, "actor": "test", "before": None, "merged_status": "granted",
        "merged_event": grant.pk, "suppression_reason": None, "after": None, "decided_by": None,
        "deciding_event": None, "note": "granted for another address: kept as evidence, not carried",
    }]  # fmt: skip
    assert [e.pk for e in gate.history(ann)] == [grant.pk, *[e.pk for e in ConsentEvent.objects.filter(action="merge")]]


def test_a_withdrawal_for_another_address_is_carried(store: Any, ann: Contact) -> None:
    work = Contact.objects.create(store=store, email="ann@work.example")
    gate.grant_consent(ann, "email", "marketing", source="checkout", occurred_at=at(0))
    gate.withdraw_consent(work, "email", "marketing", source="unsubscribe_link", occurred_at=at(10))
    merge(store, work, ann)
    assert gate.has_consent(ann, "email", "marketing").reason == "withdrawn"


def test_the_survivor_takes_the_address_it_lacks_and_the_consent_given_for_it(store: Any) -> None:
    phone_only = Contact.objects.create(store=store, phone="+447700900123")
    emailed = Contact.objects.create(store=store, email="ann@example.com")
    gate.grant_consent(emailed, "email", "marketing", source="newsletter_form", occurred_at=at(0))
    merge(store, emailed, phone_only)
    assert (phone_only.email, phone_only.phone) == ("ann@example.com", "+447700900123")
    assert gate.has_consent(phone_only, "email", "marketing").allowed


def test_a_pending_request_is_carried_and_its_link_confirms_the_survivor(store: Any, settings: Any) -> None:
    settings.PUBLIC_URL = "https://loop.example"
    phone_only = Contact.objects.create(store=store, phone="+447700900123")
    emailed = Contact.objects.create(store=store, email="ann@example.com")
    gate.grant_consent(emailed, "email", "marketing", source="form", double_opt_in=True)
    token = gate.confirmation_token(emailed, "email", "marketing")
    merge(store, emailed, phone_only)
    assert gate.has_consent(phone_only, "email", "marketing").reason == "pending_confirmation"
    confirmation = gate.confirm_consent(token, evidence={"ip": "198.51.100.7"})
    assert confirmation.contact_id == phone_only.pk
    assert gate.has_consent(phone_only, "email", "marketing").allowed


# Rule 4: suppressions are never lifted; a complaint on the other address withdraws marketing.


def test_a_suppression_of_the_address_taken_over_stays_in_force(store: Any) -> None:
    phone_only = Contact.objects.create(store=store, phone="+447700900123")
    emailed = Contact.objects.create(store=store, email="ann@example.com")
    gate.suppress(store.pk, "email", "ann@example.com", "hard_bounce")
    merge(store, emailed, phone_only)
    assert gate.has_consent(phone_only, "email", "transactional").reason == "suppressed:hard_bounce"


def test_a_complaint_about_the_other_address_withdraws_marketing_a_bounce_does_not(store: Any, ann: Contact) -> None:
    gate.grant_consent(ann, "email", "marketing", source="checkout", occurred_at=at(0))
    gate.grant_consent(ann, "sms", "marketing", source="checkout", occurred_at=at(0))
    other = Contact.objects.create(store=store, email="ann@old.example", phone="+447700900999")
    gate.suppress(store.pk, "email", "ann@old.example", "complaint", "ARF")
    gate.suppress(store.pk, "sms", "+447700900999", "hard_bounce")
    merge(store, other, ann)
    assert gate.has_consent(ann, "email", "marketing").reason == "withdrawn"
    assert gate.has_consent(ann, "email", "transactional").allowed  # a complaint is about marketing
    assert gate.has_consent(ann, "sms", "marketing").allowed  # a dead number says nothing about this one
    withdrawal = ConsentEvent.objects.get(contact=ann, action="withdraw")
    assert (withdrawal.channel, withdrawal.purpose, withdrawal.source) == ("email", "marketing", "contact_merge")
    assert withdrawal.evidence == {"merged_from_contact": other.pk, "suppression_reason": "complaint",
                                   "suppression_id": withdrawal.evidence["suppression_id"]}  # fmt: skip
    assert [(e["suppression_reason"], e["after"]) for e in merge_events(ann)] == [("complaint", "withdrawn")]


def test_a_grant_after_the_complaint_stands(store: Any, ann: Contact) -> None:
    other = Contact.objects.create(store=store, email="ann@old.example")
    gate.suppress(store.pk, "email", "ann@old.example", "complaint")
    gate.grant_consent(ann, "email", "marketing", source="checkout", occurred_at=timezone.now() + dt.timedelta(hours=1))
    merge(store, other, ann)
    assert gate.has_consent(ann, "email", "marketing").allowed


# Rule 5: preferences.


def test_the_stricter_frequency_and_the_later_pause_win(store: Any, ann: Contact, dup: Contact) -> None:
    gate.set_preferences(ann, frequency="weekly", paused_until=at(60))
    gate.set_preferences(dup, frequency="monthly", paused_until=at(10))
    merge(store, dup, ann)
    preference = Preference.objects.get(contact=ann)
    assert (preference.frequency, preference.paused_until) == ("monthly", at(60))
    lone = Contact.objects.create(store=store, email="lone@example.com")
    gate.set_preferences(lone, frequency="weekly")
    survivor = Contact.objects.create(store=store, email="survivor@example.com")
    merge(store, lone, survivor)
    assert Preference.objects.get(contact=survivor).frequency == "weekly"


# Attribution: events stay with the contact that gave them; the survivor's history shows them all.


def test_events_stay_attributed_and_the_history_follows_merge_chains(
    api: ApiClient, store: Any, ann: Contact, dup: Contact
) -> None:
    third = Contact.objects.create(store=store, email="ann@example.com")
    first = gate.grant_consent(third, "sms", "transactional", source="sms_keyword", lawful_basis="contract",
                               occurred_at=at(0))  # fmt: skip
    second = gate.grant_consent(dup, "email", "marketing", source="checkout", occurred_at=at(1))
    merge(store, third, dup)
    merge(store, dup, ann)
    assert ConsentEvent.objects.get(pk=first.pk).contact_id == third.pk
    assert ConsentEvent.objects.get(pk=second.pk).contact_id == dup.pk
    assert not ConsentState.objects.filter(contact__in=[dup, third]).exists()
    assert (state(ann), state(ann, "sms", "transactional")) == ("granted", "granted")
    history = api.get(f"/api/v1/contacts/{ann.pk}/consent").json()["history"]
    assert [(e["action"], e["channel"], e["purpose"]) for e in history] == [
        ("grant", "sms", "transactional"),
        ("grant", "email", "marketing"),
        ("merge", "sms", "transactional"),  # third into dup
        ("merge", "email", "marketing"),  # dup into ann
        ("merge", "sms", "transactional"),
    ]
    assert api.get(f"/api/v1/contacts/{third.pk}/consent").json()["contact_id"] == ann.pk


def test_a_merge_through_the_api_carries_consent(api: ApiClient, store: Any, ann: Contact, dup: Contact) -> None:
    gate.grant_consent(ann, "email", "marketing", source="checkout", occurred_at=at(0))
    gate.withdraw_consent(dup, "email", "marketing", source="unsubscribe_link", occurred_at=at(1))
    response = api.post(f"/api/v1/contacts/{ann.pk}/merge", {"source_id": dup.pk, "reason": "same person"})
    assert response.status_code == 200
    gate_answers = {(g["channel"], g["purpose"]): g["reason"]
                    for g in api.get(f"/api/v1/contacts/{ann.pk}/consent").json()["can_send"]}  # fmt: skip
    assert gate_answers[("email", "marketing")] == "withdrawn"


def test_a_refused_merge_changes_no_consent(store: Any, ann: Contact, other_store: Any) -> None:
    foreign = Contact.objects.create(store=other_store, email="ann@example.com")
    gate.withdraw_consent(foreign, "email", "marketing", source="unsubscribe_link")
    with pytest.raises(ValidationError, match="both contacts must exist"):
        merge_contacts(store=store, source_id=foreign.pk, target_id=ann.pk, reason="x", actor="t")
    assert state(ann) is None
    assert state(foreign) == "withdrawn"
    assert not ConsentEvent.objects.filter(action="merge").exists()


# The invariant behind rule 1: with distinct times, merging gives what one shared ledger would.

ACTIONS = st.sampled_from(["grant", "withdraw", "request"])
TIMELINE = st.lists(st.tuples(st.sampled_from(["target", "source"]), ACTIONS), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(timeline=TIMELINE, order=st.randoms(use_true_random=False))
def test_merging_equals_one_shared_ledger(store: Any, timeline: list[tuple[str, str]], order: Any) -> None:
    target = Contact.objects.create(store=store, email="p@example.com")
    source = Contact.objects.create(store=store, email="p@example.com")
    minutes = list(range(len(timeline)))
    order.shuffle(minutes)  # events arrive out of order, as imports and webhooks do
    expected = {"grant": "granted", "withdraw": "withdrawn", "request": "pending"}
    newest = max(zip(minutes, timeline, strict=True))[1][1]
    for minute, (side, action) in zip(minutes, timeline, strict=True):
        contact = target if side == "target" else source
        if action == "withdraw":
            gate.withdraw_consent(contact, "email", "marketing", source="t", occurred_at=at(minute))
        else:
            gate.grant_consent(contact, "email", "marketing", source="t", double_opt_in=action == "request",
                               occurred_at=at(minute))  # fmt: skip
    merge(store, source, target)
    assert state(target) == expected[newest]
