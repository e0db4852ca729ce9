"""Reads of consent, suppressions and preferences, always scoped to one store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import QuerySet

from storeloop.consent.models import (
    Channel,
    ConsentEvent,
    ConsentState,
    Preference,
    Purpose,
    Suppression,
    SuppressionRemoval,
)
from storeloop.consent.services import ConsentDecision, MessagingConsentManager, address_digest, address_for
from storeloop.contacts.models import Contact
from storeloop.contacts.normalize import normalize_email, normalize_phone
from storeloop.contacts.selectors import contact_get_for_store
from storeloop.core.errors import NotFound, ValidationError
from storeloop.stores.models import Store


@dataclass(frozen=True)
class GateAnswer:
    channel: str
    purpose: str
    decision: ConsentDecision


@dataclass(frozen=True)
class ContactConsent:
    """Everything that decides whether a contact hears from the store, and the evidence."""

    contact: Contact  # the live contact (a merged-away contact's consent moved with it)
    states: Sequence[ConsentState]
    gate: Sequence[GateAnswer]
    suppressions: Sequence[Suppression]
    preference: Preference | None
    history: Sequence[ConsentEvent]


def live_contact_for_store(*, store: Store, contact_id: int) -> Contact:
    """The contact (404 when not this store's), followed to the one it was merged into."""
    contact = contact_get_for_store(store=store, contact_id=contact_id)
    hops = 0
    while contact.merged_into_id is not None and hops < 20:
        contact = Contact.objects.get(pk=contact.merged_into_id)
        hops += 1
    return contact


def contact_consent(*, store: Store, contact_id: int) -> ContactConsent:
    contact = live_contact_for_store(store=store, contact_id=contact_id)
    gate = MessagingConsentManager()
    addresses = {c: address_for(contact, c) for c in Channel.values}
    suppressions = [
        s
        for s in Suppression.objects.filter(store=store, address__in=[a for a in addresses.values() if a])
        if addresses.get(s.channel) == s.address
    ]
    return ContactConsent(
        contact=contact,
        states=list(
            ConsentState.objects.filter(contact=contact).select_related("last_event").order_by("channel", "purpose")
        ),
        gate=[
            GateAnswer(channel, purpose, gate.has_consent(contact, channel, purpose))
            for channel in Channel.values
            for purpose in Purpose.values
        ],
        suppressions=suppressions,
        preference=Preference.objects.filter(contact=contact).first(),
        history=list(gate.history(contact)),
    )


def state_of(contact: Contact, channel: str, purpose: str) -> ConsentState | None:
    return ConsentState.objects.filter(contact=contact, channel=channel, purpose=purpose).first()


def suppression_list(
    *, store: Store, channel: str | None = None, reason: str | None = None, address: str | None = None
) -> QuerySet[Suppression]:
    qs = Suppression.objects.filter(store=store).order_by("-id")
    if channel:
        if channel not in Channel.values:
            raise ValidationError(f"channel must be one of {', '.join(Channel.values)}", code="invalid_channel",
                                  details=[{"field": "channel", "error": f"one of {Channel.values}"}])  # fmt: skip
        qs = qs.filter(channel=channel)
    if reason:
        if reason not in Suppression.Reason.values:
            raise ValidationError(f"reason must be one of {', '.join(Suppression.Reason.values)}",
                                  code="invalid_reason", details=[{"field": "reason"}])  # fmt: skip
        qs = qs.filter(reason=reason)
    if address:
        qs = qs.filter(address__in={a for a in (normalize_email(address), normalize_phone(address)) if a})
    return qs


def suppression_get_for_store(*, store: Store, suppression_id: int) -> Suppression:
    suppression = Suppression.objects.filter(store=store, pk=suppression_id).first()
    if suppression is None:
        raise NotFound(f"no suppression {suppression_id} in this store", code="suppression_not_found")
    return suppression


def suppression_by_address(*, store: Store, channel: str, address: str) -> Suppression:
    """The store's suppression of ``address`` on ``channel``, matched in normalised form."""
    normalized = normalize_email(address) if channel == Channel.EMAIL else normalize_phone(address)
    suppression = Suppression.objects.filter(store=store, channel=channel, address=normalized or "").first()
    if suppression is None:
        raise NotFound(f"{address!r} is not on the {channel} suppression list", code="suppression_not_found")
    return suppression


def suppression_removals(
    *, store: Store, channel: str | None = None, address: str | None = None
) -> QuerySet[SuppressionRemoval]:
    """The store's record of removed suppressions, newest first; ``address`` matches by digest."""
    qs = SuppressionRemoval.objects.filter(store=store).order_by("-id")
    if channel:
        if channel not in Channel.values:
            raise ValidationError(f"channel must be one of {', '.join(Channel.values)}", code="invalid_channel",
                                  details=[{"field": "channel", "error": f"one of {Channel.values}"}])  # fmt: skip
        qs = qs.filter(channel=channel)
    if address:
        forms = {a for a in (normalize_email(address), normalize_phone(address)) if a}
        qs = qs.filter(address_sha256__in=[address_digest(a) for a in forms])
    return qs
