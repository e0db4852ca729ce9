"""A contact's consent (state, gate answer, ledger) and changes with evidence; the suppression list."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router, Status

from storeloop.config.auth import request_store
from storeloop.consent.models import LawfulBasis
from storeloop.consent.schemas import (
    ConsentChangeIn,
    ConsentChangeOut,
    ConsentEventOut,
    ConsentStateOut,
    ContactConsentOut,
    DoubleOptInIn,
    DoubleOptInOut,
    GateOut,
    RemovalQuery,
    SuppressionIn,
    SuppressionOut,
    SuppressionPage,
    SuppressionRemovalOut,
    SuppressionRemovalPage,
)
from storeloop.consent.selectors import (
    contact_consent,
    live_contact_for_store,
    state_of,
    suppression_by_address,
    suppression_get_for_store,
    suppression_list,
    suppression_removals,
)
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.models import Contact
from storeloop.core.errors import ValidationError
from storeloop.core.pagination import paginate

consent_router = Router(tags=["consent"])
suppressions_router = Router(tags=["suppressions"])
# Clocks differ a little between the shop and us; anything later than this is a mistake.
FUTURE_SLACK = dt.timedelta(minutes=5)


def _invalid(field: str, message: str, code: str) -> ValidationError:
    return ValidationError(message, code=code, details=[{"field": field, "error": message}])


def _check_change(payload: ConsentChangeIn) -> None:
    """Combinations the schema cannot express; each names the field to fix."""
    if payload.action == "withdraw" and payload.lawful_basis is not None:
        raise _invalid("lawful_basis", "lawful_basis applies to a grant only", "invalid_consent_change")
    if payload.double_opt_in and (payload.action != "grant" or payload.purpose != "marketing"):
        raise _invalid("double_opt_in", "double opt-in applies to granting marketing consent only",
                       "invalid_consent_change")  # fmt: skip
    basis = payload.lawful_basis or LawfulBasis.CONSENT
    if payload.double_opt_in:
        # It sends the confirmation email now: a past time, another basis or channel cannot apply.
        if payload.channel != "email":
            raise _invalid("double_opt_in", "double opt-in is available for email only", "invalid_consent_change")
        if basis != LawfulBasis.CONSENT:
            raise _invalid("lawful_basis", "double opt-in asks for consent: leave lawful_basis out",
                           "invalid_consent_change")  # fmt: skip
        if payload.occurred_at is not None:
            raise _invalid("occurred_at", "double opt-in is requested now: leave occurred_at out",
                           "invalid_consent_change")  # fmt: skip
    if (
        payload.action == "grant"
        and basis == LawfulBasis.CONSENT
        and not (payload.evidence and payload.evidence.as_evidence())
    ):
        raise _invalid("evidence", "consent needs evidence: at least one of ip, user_agent, where, wording, "
                       "reference", "evidence_required")  # fmt: skip
    when = payload.occurred_at
    if when is not None and timezone.is_naive(when):
        raise _invalid("occurred_at", "occurred_at needs a time zone (e.g. 2026-03-01T12:00:00Z)", "invalid_time")
    if when is not None and when > timezone.now() + FUTURE_SLACK:
        raise _invalid("occurred_at", "occurred_at is in the future", "invalid_time")


@consent_router.get(
    "/{contact_id}/consent",
    response=ContactConsentOut,
    summary="A contact's consent: current state, the send gate's answer, suppressions, preferences, ledger",
)
def get_consent(request: HttpRequest, contact_id: int) -> ContactConsentOut:
    return ContactConsentOut.of(contact_consent(store=request_store(request), contact_id=contact_id))


@consent_router.post(
    "/{contact_id}/consent",
    response={201: ConsentChangeOut},
    summary="Grant or withdraw consent for one channel and purpose, with evidence",
    description="Appends to the ledger. Granting on the `consent` basis needs evidence. An `occurred_at` older "
    "than the current state's last event is recorded as evidence and leaves the state as it is. With "
    "`double_opt_in` (marketing email only) this is `POST .../consent/double-opt-in`: the request is recorded "
    "now and the confirmation email is queued (`event` is the pending request, or the grant when the contact "
    "had already consented).",
)
def change_consent(request: HttpRequest, contact_id: int, payload: ConsentChangeIn) -> Status[ConsentChangeOut]:
    contact = live_contact_for_store(store=request_store(request), contact_id=contact_id)
    _check_change(payload)
    gate = MessagingConsentManager()
    evidence = {**(payload.evidence.as_evidence() if payload.evidence else {}), "via": _actor(request)}
    if payload.double_opt_in:
        event = gate.request_double_opt_in(contact, payload.channel, source=payload.source, evidence=evidence).event
    elif payload.action == "grant":
        event = gate.grant_consent(
            contact, payload.channel, payload.purpose, source=payload.source, evidence=evidence,
            lawful_basis=payload.lawful_basis or LawfulBasis.CONSENT, occurred_at=payload.occurred_at,
        )  # fmt: skip
    else:
        event = gate.withdraw_consent(contact, payload.channel, payload.purpose, source=payload.source,
                                      evidence=evidence, occurred_at=payload.occurred_at)  # fmt: skip
    state = state_of(contact, payload.channel, payload.purpose)
    decision = gate.has_consent(contact, payload.channel, payload.purpose)
    return Status(201, ConsentChangeOut(
        contact_id=contact.pk, event=ConsentEventOut.of(event), state=ConsentStateOut.of(state) if state else None,
        can_send=GateOut(channel=payload.channel, purpose=payload.purpose, allowed=decision.allowed,
                         reason=decision.reason),
    ))  # fmt: skip


@consent_router.post(
    "/{contact_id}/consent/double-opt-in",
    response={200: DoubleOptInOut, 202: DoubleOptInOut},
    summary="Ask the contact to confirm marketing email (double opt-in): records the request, emails the link",
    description="202 when a new request was recorded and its confirmation email queued (transactional, sent "
    "after commit); 200 when nothing new was needed: a request younger than 15 minutes is pending (its email is "
    "named, none is added: a double click sends one email) or marketing email is already granted. The contact "
    "confirms at the link; until then the gate answers `pending_confirmation`. 409 `confirmation_blocked` when "
    "no email may be sent to the contact (suppressed address, withdrawn), 422 `template_missing_confirm_link` "
    "when the store's published `double-opt-in` template lacks `{{ custom.confirm_url }}`.",
)
def request_double_opt_in(request: HttpRequest, contact_id: int, payload: DoubleOptInIn) -> Status[DoubleOptInOut]:
    contact = live_contact_for_store(store=request_store(request), contact_id=contact_id)
    evidence = payload.evidence.as_evidence() if payload.evidence else {}
    if not evidence:
        raise _invalid("evidence", "a double opt-in request needs evidence of how it was asked: at least one of "
                       "ip, user_agent, where, wording, reference", "evidence_required")  # fmt: skip
    gate = MessagingConsentManager()
    result = gate.request_double_opt_in(contact, payload.channel, source=payload.source,
                                        evidence={**evidence, "via": _actor(request)})  # fmt: skip
    return Status(202 if result.outcome == "queued" else 200, _double_opt_in_out(gate, contact, result))


def _double_opt_in_out(gate: MessagingConsentManager, contact: Contact, result: Any) -> DoubleOptInOut:
    state = state_of(contact, "email", "marketing")
    decision = gate.has_consent(contact, "email", "marketing")
    return DoubleOptInOut(
        contact_id=contact.pk, outcome=result.outcome, event=ConsentEventOut.of(result.event),
        message_id=result.message.pk if result.message else None, state=ConsentStateOut.of(state) if state else None,
        can_send=GateOut(channel="email", purpose="marketing", allowed=decision.allowed, reason=decision.reason),
    )  # fmt: skip


def _actor(request: HttpRequest) -> str:
    return f"api-key:{request.auth.prefix}"  # type: ignore[attr-defined]


# --- suppressions --------------------------------------------------------------------------------


@suppressions_router.get("", response=SuppressionPage, summary="The store's suppression list, newest first")
def list_suppressions(
    request: HttpRequest,
    channel: str | None = None,
    reason: str | None = None,
    address: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> SuppressionPage:
    qs = suppression_list(store=request_store(request), channel=channel, reason=reason, address=address)
    items, count, next_offset = paginate(qs, limit=limit, offset=offset)
    return SuppressionPage(count=count, next_offset=next_offset, items=[SuppressionOut.of(s) for s in items])


@suppressions_router.post(
    "",
    response={200: SuppressionOut, 201: SuppressionOut},
    summary="Suppress an address: nothing is sent to it, not even transactional messages",
    description="201 when added, 200 when the address was already suppressed (the existing entry, unchanged).",
)
def add_suppression(request: HttpRequest, payload: SuppressionIn) -> Status[SuppressionOut]:
    store = request_store(request)
    created = MessagingConsentManager().suppress(store.pk, payload.channel, payload.address, payload.reason,
                                                 payload.detail)  # fmt: skip
    row = suppression_by_address(store=store, channel=payload.channel, address=payload.address)
    return Status(201 if created else 200, SuppressionOut.of(row))


@suppressions_router.get(
    "/removals", response=SuppressionRemovalPage, summary="Who removed which suppressions, when and why, newest first"
)
def list_removals(
    request: HttpRequest, channel: str | None = None, address: str | None = None, limit: int = 50, offset: int = 0
) -> SuppressionRemovalPage:
    qs = suppression_removals(store=request_store(request), channel=channel, address=address)
    items, count, next_offset = paginate(qs, limit=limit, offset=offset)
    return SuppressionRemovalPage(count=count, next_offset=next_offset,
                                  items=[SuppressionRemovalOut.of(r) for r in items])  # fmt: skip


@suppressions_router.get("/{suppression_id}", response=SuppressionOut, summary="One suppression entry")
def get_suppression(request: HttpRequest, suppression_id: int) -> SuppressionOut:
    return SuppressionOut.of(suppression_get_for_store(store=request_store(request), suppression_id=suppression_id))


@suppressions_router.delete(
    "/{suppression_id}",
    response={204: None},
    summary="Take an address off the list",
    description="Recorded (who, when, why, what it was suppressed for): see GET /api/v1/suppressions/removals.",
)
def remove_suppression(request: HttpRequest, suppression_id: int, query: Query[RemovalQuery]) -> Status[None]:
    store = request_store(request)
    row = suppression_get_for_store(store=store, suppression_id=suppression_id)
    MessagingConsentManager().unsuppress(store.pk, row.channel, row.address, query.reason, _actor(request))
    return Status(204, None)
