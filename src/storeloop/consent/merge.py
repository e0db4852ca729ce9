"""What a contact merge does to consent (``contacts.services.merge_contacts`` calls ``carry_consent``).

The rule, per (channel, purpose), for ``source`` merged into ``target``:

1. The ledger rule decides, across both contacts: the state whose deciding event is newest wins,
   exactly as if both ledgers had been one. So a withdrawal on either contact made after the
   other's grant leaves the merged contact withdrawn, and a grant made after the other's
   withdrawal stands.
2. Ties (the same instant) go to the more restrictive state: withdrawn, then pending, then granted.
3. A withdrawal always counts. A grant or a pending request of ``source`` counts only when it was
   given for the address the merged contact uses on that channel (``source`` had no address
   there, or the same one): consent to mail b@ is not consent to mail a@. Otherwise it stays in
   the ledger as evidence and does not open the gate.
4. Suppressions are per address and are never lifted by a merge. When ``source``'s address on a
   channel differs from ``target``'s and is suppressed for a complaint or a provider opt-out
   (the person said "stop", not "this mailbox is dead"), that counts as a withdrawal of marketing
   on the channel at the time it was suppressed, and a ``withdraw`` event says so. Hard bounces
   and manual blocks describe the address only and do not carry.
5. Preferences: the stricter frequency and the later pause win.

The events stay where they are: each remains attributed to the contact that gave it (the ledger
is append-only), ``MessagingConsentManager.history`` of the merged contact includes the events of
every contact merged into it, and the state row points at the event that decided it, whichever
contact it belongs to. One ``merge`` event per affected (channel, purpose) on ``target`` records
"merged from contact N": what each side had, and the result. ``source``'s state rows are removed
(a merged-away contact has no state of its own; the gate always asks the live contact).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from storeloop.consent.models import (
    Channel,
    ConsentEvent,
    ConsentState,
    ConsentStatus,
    LawfulBasis,
    Preference,
    Purpose,
    Suppression,
)
from storeloop.consent.services import address_for
from storeloop.contacts.models import Contact

SOURCE = "contact_merge"
RESTRICTIVENESS = {ConsentStatus.GRANTED: 0, ConsentStatus.PENDING: 1, ConsentStatus.WITHDRAWN: 2}
CARRIED_SUPPRESSIONS = (Suppression.Reason.COMPLAINT, Suppression.Reason.PROVIDER_OPT_OUT)
STRICTNESS = {Preference.Frequency.ANY: 0, Preference.Frequency.WEEKLY: 1, Preference.Frequency.MONTHLY: 2}


@dataclass(frozen=True)
class _Candidate:
    side: str  # "target", "source" or "suppression"
    status: str
    lawful_basis: str
    occurred_at: dt.datetime
    event: ConsentEvent | None  # None for a suppression: its withdrawal is written when it wins

    @property
    def rank(self) -> tuple[dt.datetime, int]:
        return self.occurred_at, RESTRICTIVENESS[ConsentStatus(self.status)]

    @staticmethod
    def of(side: str, state: ConsentState) -> _Candidate:
        return _Candidate(side, state.status, state.lawful_basis, state.last_event.occurred_at, state.last_event)


def _default_basis(purpose: str) -> str:
    return LawfulBasis.CONTRACT if purpose == Purpose.TRANSACTIONAL else LawfulBasis.CONSENT


def carry_consent(*, source: Contact, target: Contact, actor: str) -> list[ConsentEvent]:
    """Fold ``source``'s consent state into ``target`` by the rules above; returns the events written."""
    now = timezone.now()
    written: list[ConsentEvent] = []
    with transaction.atomic():
        states = {
            (s.contact_id, s.channel, s.purpose): s
            for s in ConsentState.objects.select_for_update(of=("self",))
            .select_related("last_event")
            .filter(contact_id__in=[source.pk, target.pk])
        }
        other_address = {
            c: address_for(source, c)
            for c in Channel.values
            if address_for(source, c) and address_for(source, c) != address_for(target, c)
        }
        stops = {
            s.channel: s
            for s in Suppression.objects.filter(
                store_id=target.store_id, reason__in=CARRIED_SUPPRESSIONS, address__in=set(other_address.values())
            )
            if other_address.get(s.channel) == s.address
        }
        pairs = {(channel, purpose) for (contact_id, channel, purpose) in states if contact_id == source.pk}
        pairs |= {(channel, Purpose.MARKETING) for channel in stops}
        for channel, purpose in sorted(pairs):
            mine = states.get((target.pk, channel, purpose))
            theirs = states.get((source.pk, channel, purpose))
            candidates = [_Candidate.of("target", mine)] if mine else []
            note = ""
            if theirs is not None:
                if theirs.status == ConsentStatus.WITHDRAWN or channel not in other_address:
                    candidates.append(_Candidate.of("source", theirs))
                else:
                    note = f"{theirs.status} for another address: kept as evidence, not carried"
            stop = stops.get(channel) if purpose == Purpose.MARKETING else None
            if stop is not None:
                basis = mine.lawful_basis if mine else LawfulBasis.CONSENT
                candidates.append(_Candidate("suppression", ConsentStatus.WITHDRAWN, basis, stop.created_at, None))
            decided = max(candidates, key=lambda c: c.rank, default=None)
            deciding_event = decided.event if decided else None
            if decided is not None and decided.side != "target":
                if deciding_event is None and stop is not None:
                    deciding_event = ConsentEvent.objects.create(
                        store_id=target.store_id, contact=target, channel=channel, purpose=purpose,
                        action=ConsentEvent.Action.WITHDRAW, lawful_basis=decided.lawful_basis, source=SOURCE,
                        evidence={"merged_from_contact": source.pk, "suppression_id": stop.pk,
                                  "suppression_reason": stop.reason},
                        occurred_at=stop.created_at,
                    )  # fmt: skip
                    written.append(deciding_event)
                ConsentState.objects.update_or_create(
                    contact=target, channel=channel, purpose=purpose,
                    defaults={"store_id": target.store_id, "status": decided.status,
                              "lawful_basis": decided.lawful_basis, "last_event": deciding_event,
                              "updated_at": decided.occurred_at},
                )  # fmt: skip
            evidence: dict[str, Any] = {
                "merged_from_contact": source.pk,
                "actor": actor[:150],
                "before": mine.status if mine else None,
                "merged_status": theirs.status if theirs else None,
                "merged_event": theirs.last_event_id if theirs else None,
                "suppression_reason": stop.reason if stop else None,
                "after": decided.status if decided else None,
                "decided_by": decided.side if decided else None,
                "deciding_event": deciding_event.pk if deciding_event else None,
            }
            if note:
                evidence["note"] = note
            merge_event = ConsentEvent.objects.create(
                store_id=target.store_id, contact=target, channel=channel, purpose=purpose,
                action=ConsentEvent.Action.MERGE, source=SOURCE, evidence=evidence, occurred_at=now,
                lawful_basis=decided.lawful_basis if decided else _default_basis(purpose),
            )  # fmt: skip
            written.append(merge_event)
        ConsentState.objects.filter(contact=source).delete()
        _merge_preferences(source, target)
    return written


def _merge_preferences(source: Contact, target: Contact) -> None:
    theirs = Preference.objects.filter(contact=source).first()
    if theirs is None:
        return
    mine = Preference.objects.filter(contact=target).first()
    if mine is None:
        Preference.objects.create(contact=target, frequency=theirs.frequency, paused_until=theirs.paused_until)
        return
    mine.frequency = max(mine.frequency, theirs.frequency, key=lambda f: STRICTNESS.get(Preference.Frequency(f), 0))
    pauses = [p for p in (mine.paused_until, theirs.paused_until) if p is not None]
    mine.paused_until = max(pauses) if pauses else None
    mine.save()
