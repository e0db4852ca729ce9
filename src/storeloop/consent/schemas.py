"""Request and response shapes of the consent and suppression API."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Any, Literal

from ninja import Schema
from pydantic import ConfigDict, Field, field_validator

from storeloop.consent.models import ConsentEvent, ConsentState, Preference, Suppression, SuppressionRemoval
from storeloop.consent.selectors import ContactConsent
from storeloop.core.moments import Moment

ChannelName = Literal["email", "sms", "whatsapp"]
PurposeName = Literal["transactional", "marketing"]
LawfulBasisName = Literal["consent", "contract", "legitimate_interest"]
ReasonName = Literal["hard_bounce", "complaint", "provider_opt_out", "manual"]


class StrictIn(Schema):
    """Input: an unknown field is a typo to report, not something to drop silently."""

    model_config = ConfigDict(extra="forbid")


# --- consent -------------------------------------------------------------------------------------


class EvidenceIn(StrictIn):
    """How the contact gave (or took back) consent: the proof kept in the ledger."""

    ip: str | None = Field(default=None, description="the contact's IP address")
    user_agent: str | None = Field(default=None, max_length=300)
    where: str | None = Field(default=None, max_length=500, description="page, form or place it was given")
    wording: str | None = Field(default=None, max_length=2000, description="the text the contact agreed to")
    reference: str | None = Field(default=None, max_length=200, description="e.g. a form submission id")

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError("not an IPv4 or IPv6 address") from None

    def as_evidence(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v not in (None, "")}


class ConsentChangeIn(StrictIn):
    action: Literal["grant", "withdraw"]
    channel: ChannelName
    purpose: PurposeName
    source: str = Field(pattern=r"^[a-z0-9_.:-]{1,50}$", description="e.g. checkout, form, phone_call, import")
    lawful_basis: LawfulBasisName | None = Field(default=None, description="grant only; default consent")
    double_opt_in: bool = Field(
        default=False, description="marketing email grant only: emails a confirmation link; pending until followed"
    )
    evidence: EvidenceIn | None = None
    occurred_at: Moment | None = Field(default=None, description="when it was given; default now")


class ConsentEventOut(Schema):
    id: int
    channel: str
    purpose: str
    action: str
    lawful_basis: str
    source: str
    evidence: dict[str, Any]
    occurred_at: dt.datetime
    recorded_at: dt.datetime

    @staticmethod
    def of(event: ConsentEvent) -> ConsentEventOut:
        return ConsentEventOut(
            id=event.pk, channel=event.channel, purpose=event.purpose, action=event.action,
            lawful_basis=event.lawful_basis, source=event.source, evidence=event.evidence,
            occurred_at=event.occurred_at, recorded_at=event.recorded_at,
        )  # fmt: skip


class ConsentStateOut(Schema):
    channel: str
    purpose: str
    status: str
    lawful_basis: str
    source: str
    updated_at: dt.datetime
    last_event_id: int

    @staticmethod
    def of(state: ConsentState) -> ConsentStateOut:
        return ConsentStateOut(
            channel=state.channel, purpose=state.purpose, status=state.status, lawful_basis=state.lawful_basis,
            source=state.last_event.source, updated_at=state.updated_at, last_event_id=state.last_event_id,
        )  # fmt: skip


class GateOut(Schema):
    channel: str
    purpose: str
    allowed: bool
    reason: str


class PreferenceOut(Schema):
    frequency: str
    paused_until: dt.datetime | None

    @staticmethod
    def of(preference: Preference | None) -> PreferenceOut:
        if preference is None:
            return PreferenceOut(frequency=Preference.Frequency.ANY, paused_until=None)
        return PreferenceOut(frequency=preference.frequency, paused_until=preference.paused_until)


class SuppressionOut(Schema):
    id: int
    channel: str
    address: str
    reason: str
    detail: str
    created_at: dt.datetime

    @staticmethod
    def of(row: Suppression) -> SuppressionOut:
        return SuppressionOut(id=row.pk, channel=row.channel, address=row.address, reason=row.reason,
                              detail=row.detail, created_at=row.created_at)  # fmt: skip


class ContactConsentOut(Schema):
    contact_id: int = Field(description="the live contact: a merged-away contact answers for the one it joined")
    states: list[ConsentStateOut]
    can_send: list[GateOut] = Field(description="the send gate's answer now, per channel and purpose")
    suppressions: list[SuppressionOut]
    preference: PreferenceOut
    history: list[ConsentEventOut] = Field(description="the ledger, oldest first")

    @staticmethod
    def of(consent: ContactConsent) -> ContactConsentOut:
        return ContactConsentOut(
            contact_id=consent.contact.pk,
            states=[ConsentStateOut.of(s) for s in consent.states],
            can_send=[
                GateOut(channel=g.channel, purpose=g.purpose, allowed=g.decision.allowed, reason=g.decision.reason)
                for g in consent.gate
            ],
            suppressions=[SuppressionOut.of(s) for s in consent.suppressions],
            preference=PreferenceOut.of(consent.preference),
            history=[ConsentEventOut.of(e) for e in consent.history],
        )


class ConsentChangeOut(Schema):
    contact_id: int
    event: ConsentEventOut
    state: ConsentStateOut | None = Field(description="current state (an older event is kept as evidence only)")
    can_send: GateOut


class DoubleOptInIn(StrictIn):
    channel: Literal["email"] = "email"
    source: str = Field(default="double_opt_in", pattern=r"^[a-z0-9_.:-]{1,50}$",
                        description="where the request came from, e.g. newsletter_form")  # fmt: skip
    evidence: EvidenceIn | None = Field(default=None, description="how the contact asked (required)")


class DoubleOptInOut(Schema):
    contact_id: int
    outcome: Literal["queued", "already_queued", "already_granted"] = Field(
        description="queued: a new request and confirmation email; already_queued: a recent request is pending "
        "and its email is the one named; already_granted: nothing to confirm, no email"
    )
    event: ConsentEventOut = Field(description="the pending request (or, when already granted, the grant)")
    message_id: int | None = Field(description="the confirmation email (see GET /api/v1/messages/{id})")
    state: ConsentStateOut | None
    can_send: GateOut


# --- suppressions --------------------------------------------------------------------------------


class SuppressionIn(StrictIn):
    channel: ChannelName
    address: str = Field(min_length=1, max_length=320, description="email address, or phone number in E.164")
    reason: ReasonName = "manual"
    detail: str = Field(default="", max_length=500)


class SuppressionPage(Schema):
    count: int
    next_offset: int | None
    items: list[SuppressionOut]


class RemovalQuery(Schema):
    reason: str = Field(default="", max_length=500, description="why it is removed (kept in the record)")


class SuppressionRemovalOut(Schema):
    id: int
    suppression_id: int
    channel: str
    address_sha256: str = Field(description="SHA-256 of the normalised address (the address itself is not kept)")
    reason: str = Field(description="why the address had been suppressed")
    suppressed_at: dt.datetime
    note: str = Field(description="why it was removed")
    actor: str
    removed_at: dt.datetime

    @staticmethod
    def of(row: SuppressionRemoval) -> SuppressionRemovalOut:
        return SuppressionRemovalOut(
            id=row.pk, suppression_id=row.suppression_id, channel=row.channel, address_sha256=row.address_sha256,
            reason=row.reason, suppressed_at=row.suppressed_at, note=row.note, actor=row.actor,
            removed_at=row.removed_at,
        )  # fmt: skip


class SuppressionRemovalPage(Schema):
    count: int
    next_offset: int | None
    items: list[SuppressionRemovalOut]
