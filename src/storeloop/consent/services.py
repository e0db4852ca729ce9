"""``MessagingConsentManager``: the one gate every send passes, and the only writer of consent.

``has_consent`` is asked at send time (not only when a message is queued), so a withdrawal, a
suppression or a pause made after queueing still stops the message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import QuerySet
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
    SuppressionRemoval,
)
from storeloop.contacts.models import Contact
from storeloop.contacts.normalize import normalize_email, normalize_phone
from storeloop.core.bulk import ids_in, texts_in
from storeloop.core.errors import NotFound, ValidationError

if TYPE_CHECKING:
    from storeloop.consent.double_opt_in import DoubleOptInRequest

Action = ConsentEvent.Action
UNSUBSCRIBE_SALT = "storeloop.consent.unsubscribe"
CONFIRM_SALT = "storeloop.consent.confirm"
DEFAULT_LINK_AGE = dt.timedelta(days=60)
CONFIRM_LINK_AGE = dt.timedelta(days=7)


@dataclass(frozen=True)
class ConsentDecision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class PendingConfirmation:
    """What a valid double opt-in link confirms: the live contact, channel, purpose, current status."""

    contact: Contact
    channel: str
    purpose: str
    status: str


def live_contact(contact: Contact) -> Contact:
    """The contact itself, or the one it was merged into (followed through chains)."""
    hops = 0
    while contact.merged_into_id is not None and hops < 20:
        contact = Contact.objects.get(pk=contact.merged_into_id)
        hops += 1
    return contact


def address_for(contact: Contact, channel: str) -> str:
    return contact.email if channel == Channel.EMAIL else contact.phone


def address_digest(address: str) -> str:
    """SHA-256 of a normalised address: lets links and audit rows name an address without holding it."""
    return hashlib.sha256(address.encode()).hexdigest()


def merged_family(contact: Contact) -> list[int]:
    """``contact`` and every contact merged into it, directly or through a chain of merges."""
    ids, frontier = [contact.pk], [contact.pk]
    for _ in range(20):  # merge chains are short; the bound guards against a corrupted cycle
        frontier = list(Contact.objects.filter(merged_into_id__in=frontier).values_list("pk", flat=True))
        if not frontier:
            break
        ids.extend(frontier)
    return ids


def _decide(purpose: str, suppression_reason: str | None, state: str | None, paused: bool) -> ConsentDecision:
    """The gate's rules, given what is recorded (see ``MessagingConsentManager.has_consent``)."""
    if suppression_reason is not None:
        return ConsentDecision(False, f"suppressed:{suppression_reason}")
    if purpose == Purpose.TRANSACTIONAL:
        if state == ConsentStatus.WITHDRAWN:
            return ConsentDecision(False, "withdrawn")
        return ConsentDecision(True, "contract")
    if state is None:
        return ConsentDecision(False, "no_consent")
    if state == ConsentStatus.PENDING:
        return ConsentDecision(False, "pending_confirmation")
    if state == ConsentStatus.WITHDRAWN:
        return ConsentDecision(False, "withdrawn")
    if paused:
        return ConsentDecision(False, "paused")
    return ConsentDecision(True, "consent")


_CHANNELS = frozenset(Channel.values)  # ``Channel.values`` builds a new list on every access
_PURPOSES = frozenset(Purpose.values)


def _validate(channel: str, purpose: str) -> None:
    if channel not in _CHANNELS:
        raise ValidationError(f"unknown channel {channel!r}", code="invalid_channel")
    if purpose not in _PURPOSES:
        raise ValidationError(f"unknown purpose {purpose!r}", code="invalid_purpose")


@lru_cache(maxsize=8)
def _signer(salt: str, secret_key: str) -> signing.TimestampSigner:
    """One signer per salt and key (the dispatcher signs a link per marketing message)."""
    return signing.TimestampSigner(key=secret_key, salt=salt)


class MessagingConsentManager:
    """Consent per contact, channel and purpose, with its evidence (design note 2C)."""

    # --- the gate ------------------------------------------------------------------------------

    def has_consent(
        self, contact: Contact, channel: str, purpose: str, *, at: dt.datetime | None = None
    ) -> ConsentDecision:
        """May we send ``purpose`` messages to ``contact`` on ``channel`` now?

        Suppressed addresses get nothing, not even transactional messages. Transactional messages
        need no opt-in (the order is the contract) but stop after a withdrawal on that channel
        (SMS STOP blocks everything at the carrier anyway). Marketing needs a granted consent
        (confirmed, when double opt-in applies) and no active pause.
        """
        _validate(channel, purpose)
        at = at or timezone.now()
        contact = live_contact(contact)
        address = address_for(contact, channel)
        if not address:
            return ConsentDecision(False, "no_address")
        suppression = Suppression.objects.filter(store_id=contact.store_id, channel=channel, address=address).first()
        state = ConsentState.objects.filter(contact=contact, channel=channel, purpose=purpose).first()
        paused = (
            purpose == Purpose.MARKETING and Preference.objects.filter(contact=contact, paused_until__gt=at).exists()
        )
        return _decide(purpose, suppression.reason if suppression else None, state.status if state else None, paused)

    def has_consent_many(
        self, requests: Sequence[tuple[Contact, str, str]], *, at: dt.datetime | None = None
    ) -> list[ConsentDecision]:
        """``has_consent`` for a batch of ``(contact, channel, purpose)``: the same rules (one
        decision function), three queries instead of three per message. The dispatcher asks this
        for every batch it sends."""
        for _, channel, purpose in requests:
            _validate(channel, purpose)
        at = at or timezone.now()
        live = [live_contact(contact) for contact, _, _ in requests]  # a query only for merged ones
        addresses = [address_for(contact, channel) for contact, (_, channel, _) in zip(live, requests, strict=True)]
        suppressed: dict[tuple[int, str, str], str] = {}
        wanted = {(c.store_id, ch, a) for c, (_, ch, _), a in zip(live, requests, addresses, strict=True) if a}
        if wanted:
            rows = Suppression.objects.filter(
                texts_in(Suppression, "address", {w[2] for w in wanted}),
                store_id__in={w[0] for w in wanted},
                channel__in={w[1] for w in wanted},
            ).values_list("store_id", "channel", "address", "reason")
            suppressed = {(store_id, ch, a): reason for store_id, ch, a, reason in rows}
        ids = {c.pk for c in live}
        states = {
            (contact_id, ch, p): status
            for contact_id, ch, p, status in ConsentState.objects.filter(
                ids_in(ConsentState, "contact", ids)
            ).values_list("contact_id", "channel", "purpose", "status")
        }
        paused = set(
            Preference.objects.filter(ids_in(Preference, "contact", ids), paused_until__gt=at).values_list(
                "contact_id", flat=True
            )
        )
        decisions = []
        for contact, (_, channel, purpose), address in zip(live, requests, addresses, strict=True):
            if not address:
                decisions.append(ConsentDecision(False, "no_address"))
                continue
            decisions.append(_decide(
                purpose, suppressed.get((contact.store_id, channel, address)),
                states.get((contact.pk, channel, purpose)), purpose == Purpose.MARKETING and contact.pk in paused,
            ))  # fmt: skip
        return decisions

    # --- writing consent -----------------------------------------------------------------------

    def grant_consent(
        self,
        contact: Contact,
        channel: str,
        purpose: str,
        *,
        source: str,
        evidence: dict[str, Any] | None = None,
        lawful_basis: str = LawfulBasis.CONSENT,
        double_opt_in: bool = False,
        occurred_at: dt.datetime | None = None,
    ) -> ConsentEvent:
        """Record consent. With ``double_opt_in`` the state stays pending until ``confirm_consent``."""
        _validate(channel, purpose)
        if lawful_basis not in LawfulBasis.values:
            raise ValidationError(f"unknown lawful basis {lawful_basis!r}", code="invalid_lawful_basis")
        action = Action.REQUEST if double_opt_in else Action.GRANT
        status = ConsentStatus.PENDING if double_opt_in else ConsentStatus.GRANTED
        return self._record(contact, channel, purpose, action, status, source, evidence, lawful_basis, occurred_at)

    def confirmation_token(self, contact: Contact, channel: str, purpose: str) -> str:
        """A signed token for the double opt-in link. It names the address it was sent to (as a
        digest, so the link carries no personal data): a contact whose address changed since cannot
        confirm the new one with a link mailed to the old one."""
        contact = live_contact(contact)
        return signing.TimestampSigner(salt=CONFIRM_SALT).sign_object(
            {"c": contact.pk, "ch": channel, "p": purpose, "a": address_digest(address_for(contact, channel))[:16]},
            compress=True,
        )

    def generate_confirmation_link(
        self, contact: Contact, channel: str = Channel.EMAIL, purpose: str = Purpose.MARKETING
    ) -> str:
        """The double opt-in link (``/confirm/<token>``); it expires after 7 days."""
        _validate(channel, purpose)
        return f"{settings.PUBLIC_URL}/confirm/{self.confirmation_token(contact, channel, purpose)}"

    def read_confirmation_token(self, token: str) -> PendingConfirmation:
        """Check a double opt-in link without changing anything: signature, age, the contact, that
        the address is still the one the link was sent to, and that there is something to confirm."""
        data = self._unsign(token, CONFIRM_SALT, CONFIRM_LINK_AGE)
        channel, purpose = str(data.get("ch", "")), str(data.get("p", ""))
        if channel not in _CHANNELS or purpose not in _PURPOSES or not isinstance(data.get("a"), str):
            raise ValidationError("this link is not valid", code="link_invalid")
        contact = Contact.objects.filter(pk=int(data.get("c") or 0)).first()
        if contact is None:
            raise NotFound("this confirmation link points at nobody", code="contact_not_found")
        contact = live_contact(contact)
        address = address_for(contact, channel)
        if not address or not hmac.compare_digest(address_digest(address)[:16], data["a"]):
            raise ValidationError("this link was sent to an address we no longer use for you; ask for a new one",
                                  code="link_stale")  # fmt: skip
        state = ConsentState.objects.filter(contact=contact, channel=channel, purpose=purpose).first()
        if state is None or state.status == ConsentStatus.WITHDRAWN:
            raise ValidationError("there is no pending subscription to confirm; sign up again to get a new link",
                                  code="nothing_to_confirm")  # fmt: skip
        return PendingConfirmation(contact, channel, purpose, state.status)

    def confirm_consent(self, token: str, *, evidence: dict[str, Any] | None = None) -> ConsentEvent:
        """The double opt-in link was followed: pending becomes granted. Confirming twice records
        one confirmation (the state row is locked, so two clicks at once cannot both record)."""
        link = self.read_confirmation_token(token)
        with transaction.atomic():
            state = (
                ConsentState.objects.select_for_update(of=("self",))
                .select_related("last_event")
                .filter(contact=link.contact, channel=link.channel, purpose=link.purpose)
                .first()
            )
            if state is not None and state.status == ConsentStatus.GRANTED:
                return state.last_event
            if state is None or state.status != ConsentStatus.PENDING:
                raise ValidationError("there is no pending subscription to confirm", code="nothing_to_confirm")
            proof = dict(evidence or {})
            if state.last_event.action == Action.REQUEST:
                proof["request_event"] = state.last_event_id
            return self._record(
                link.contact, link.channel, link.purpose, Action.CONFIRM, ConsentStatus.GRANTED, "double_opt_in",
                proof, state.lawful_basis, None,
            )  # fmt: skip

    def request_double_opt_in(
        self,
        contact: Contact,
        channel: str = Channel.EMAIL,
        *,
        source: str = "double_opt_in",
        evidence: dict[str, Any] | None = None,
    ) -> DoubleOptInRequest:
        """Ask ``contact`` to confirm marketing on ``channel`` (email): record the pending request
        and queue a transactional confirmation email with the link. Asking again while a recent
        request is pending (a double click) sends nothing new; see ``consent.double_opt_in``."""
        from storeloop.consent.double_opt_in import request_double_opt_in  # it imports messaging

        return request_double_opt_in(self, contact, channel, source=source, evidence=evidence)

    def withdraw_consent(
        self,
        contact: Contact,
        channel: str,
        purpose: str,
        *,
        source: str,
        evidence: dict[str, Any] | None = None,
        occurred_at: dt.datetime | None = None,
    ) -> ConsentEvent:
        _validate(channel, purpose)
        basis = ConsentState.objects.filter(
            contact=live_contact(contact), channel=channel, purpose=purpose
        ).values_list("lawful_basis", flat=True).first() or (
            LawfulBasis.CONTRACT if purpose == Purpose.TRANSACTIONAL else LawfulBasis.CONSENT
        )
        return self._record(contact, channel, purpose, Action.WITHDRAW, ConsentStatus.WITHDRAWN, source, evidence,
                            basis, occurred_at)  # fmt: skip

    def _record(
        self,
        contact: Contact,
        channel: str,
        purpose: str,
        action: str,
        status: str,
        source: str,
        evidence: dict[str, Any] | None,
        lawful_basis: str,
        occurred_at: dt.datetime | None,
    ) -> ConsentEvent:
        contact = live_contact(contact)
        when = occurred_at or timezone.now()
        with transaction.atomic():
            event = ConsentEvent.objects.create(
                store_id=contact.store_id, contact=contact, channel=channel, purpose=purpose, action=action,
                lawful_basis=lawful_basis, source=source[:50], evidence=evidence or {}, occurred_at=when,
            )  # fmt: skip
            state = ConsentState.objects.select_for_update().filter(contact=contact, channel=channel, purpose=purpose)
            current = state.first()
            # An event older than the state's last event is evidence, not news: keep the newer state.
            if current is None or current.last_event.occurred_at <= when:
                ConsentState.objects.update_or_create(
                    contact=contact, channel=channel, purpose=purpose,
                    defaults={"store_id": contact.store_id, "status": status, "lawful_basis": lawful_basis,
                              "last_event": event, "updated_at": when},
                )  # fmt: skip
        return event

    # --- links ---------------------------------------------------------------------------------

    def generate_unsubscribe_link(
        self, contact: Contact, channel: str = Channel.EMAIL, purpose: str = Purpose.MARKETING
    ) -> str:
        """A signed, tamper-proof link that unsubscribes without login; it expires after 60 days."""
        _validate(channel, purpose)
        # Uncompressed: Django keeps the plain form anyway when zlib does not make it shorter, as
        # with a payload this small, so the token is the same without the attempt.
        token = _signer(UNSUBSCRIBE_SALT, settings.SECRET_KEY).sign_object(
            {"c": contact.pk, "ch": channel, "p": purpose}
        )
        return f"{settings.PUBLIC_URL}/u/{token}"

    def preferences_link_for(self, unsubscribe_link: str) -> str:
        """The preference center for the same signed token as ``unsubscribe_link`` ("" when it is
        not one of ours)."""
        prefix = f"{settings.PUBLIC_URL}/u/"
        if not unsubscribe_link.startswith(prefix):
            return ""
        return f"{settings.PUBLIC_URL}/preferences/{unsubscribe_link[len(prefix) :]}"

    def read_unsubscribe_token(
        self, token: str, *, max_age: dt.timedelta = DEFAULT_LINK_AGE
    ) -> tuple[Contact, str, str]:
        data = self._unsign(token, UNSUBSCRIBE_SALT, max_age)
        contact = Contact.objects.filter(pk=int(data.get("c") or 0)).first()
        if contact is None:
            raise NotFound("this link points at nobody", code="contact_not_found")
        _validate(data.get("ch", ""), data.get("p", ""))
        return live_contact(contact), data["ch"], data["p"]

    def unsubscribe(self, token: str, *, evidence: dict[str, Any] | None = None) -> ConsentEvent:
        contact, channel, purpose = self.read_unsubscribe_token(token)
        return self.withdraw_consent(contact, channel, purpose, source="unsubscribe_link", evidence=evidence)

    @staticmethod
    def _unsign(token: str, salt: str, max_age: dt.timedelta) -> dict[str, Any]:
        try:
            data: dict[str, Any] = signing.TimestampSigner(salt=salt).unsign_object(token, max_age=max_age)
        except signing.SignatureExpired:
            raise ValidationError("this link has expired; use the newest message's link", code="link_expired") from None
        except signing.BadSignature:
            raise ValidationError("this link is not valid", code="link_invalid") from None
        return data

    # --- suppression, keywords, preferences ----------------------------------------------------

    def suppress(self, store_id: int, channel: str, address: str, reason: str, detail: str = "") -> bool:
        """Add an address to the store's suppression list; returns False when already there."""
        normalized = normalize_email(address) if channel == Channel.EMAIL else normalize_phone(address)
        if not normalized:
            raise ValidationError(f"not a valid {channel} address", code="invalid_address")
        _, created = Suppression.objects.get_or_create(
            store_id=store_id, channel=channel, address=normalized,
            defaults={"reason": reason, "detail": detail[:500]},
        )  # fmt: skip
        return created

    def unsuppress(self, store_id: int, channel: str, address: str, reason: str, actor: str) -> SuppressionRemoval:
        """Take an address off the store's suppression list and record who did it and why
        (``SuppressionRemoval``, append-only). Raises ``NotFound`` when it is not on the list."""
        if channel not in _CHANNELS:
            raise ValidationError(f"unknown channel {channel!r}", code="invalid_channel")
        normalized = (normalize_email(address) if channel == Channel.EMAIL else normalize_phone(address)) or ""
        with transaction.atomic():
            row = Suppression.objects.select_for_update().filter(store_id=store_id, channel=channel,
                                                                 address=normalized).first()  # fmt: skip
            # The delete's count decides a race between two removals: only one of them records.
            if row is None or not Suppression.objects.filter(pk=row.pk).delete()[0]:
                raise NotFound(f"{address!r} is not on the {channel} suppression list", code="suppression_not_found")
            return SuppressionRemoval.objects.create(
                store_id=store_id, suppression_id=row.pk, channel=channel, address_sha256=address_digest(normalized),
                reason=row.reason, suppressed_at=row.created_at, note=reason.strip()[:500], actor=actor[:150],
                removed_at=timezone.now(),
            )  # fmt: skip

    def handle_keyword(
        self, store_id: int, channel: str, phone: str, keyword: str, *, evidence: dict[str, Any] | None = None
    ) -> list[ConsentEvent]:
        """SMS/WhatsApp STOP withdraws every purpose on the channel; START restores marketing."""
        number = normalize_phone(phone)
        if not number:
            return []
        events: list[ConsentEvent] = []
        for contact in Contact.objects.filter(store_id=store_id, phone=number, merged_into__isnull=True):
            if keyword == "stop":
                for purpose in (Purpose.MARKETING, Purpose.TRANSACTIONAL):
                    events.append(self.withdraw_consent(contact, channel, purpose, source=f"{channel}_keyword",
                                                        evidence=evidence))  # fmt: skip
            elif keyword == "start":
                # START undoes STOP: messages on the channel again, and marketing only if STOP is what
                # ended a consent given before. Texting START (or YES) is no opt-in to marketing.
                if self._stopped_marketing(contact, channel):
                    events.append(self.grant_consent(contact, channel, Purpose.MARKETING, source=f"{channel}_keyword",
                                                     evidence=evidence))  # fmt: skip
                events.append(self.grant_consent(contact, channel, Purpose.TRANSACTIONAL, source=f"{channel}_keyword",
                                                 evidence=evidence, lawful_basis=LawfulBasis.CONTRACT))  # fmt: skip
        return events

    @staticmethod
    def _stopped_marketing(contact: Contact, channel: str) -> bool:
        state = (
            ConsentState.objects.select_related("last_event")
            .filter(contact=contact, channel=channel, purpose=Purpose.MARKETING)
            .first()
        )
        if state is None or state.status != ConsentStatus.WITHDRAWN or state.last_event.source != f"{channel}_keyword":
            return False
        return ConsentEvent.objects.filter(
            contact=contact, channel=channel, purpose=Purpose.MARKETING,
            action__in=[Action.GRANT, Action.CONFIRM], occurred_at__lte=state.last_event.occurred_at,
        ).exists()  # fmt: skip

    def set_preferences(
        self, contact: Contact, *, frequency: str | None = None, paused_until: dt.datetime | None = None
    ) -> Preference:
        if frequency is not None and frequency not in Preference.Frequency.values:
            raise ValidationError(f"frequency must be one of {Preference.Frequency.values}", code="invalid_frequency")
        preference, _ = Preference.objects.get_or_create(contact=live_contact(contact))
        if frequency is not None:
            preference.frequency = frequency
        preference.paused_until = paused_until
        preference.save()
        return preference

    def history(self, contact: Contact) -> QuerySet[ConsentEvent]:
        """The ledger of the live contact, including the events of contacts merged into it (they
        stay attributed to the contact that gave them), oldest first."""
        return ConsentEvent.objects.filter(contact_id__in=merged_family(live_contact(contact))).order_by(
            "occurred_at", "id"
        )

    # --- merges --------------------------------------------------------------------------------

    def carry_consent_on_merge(self, *, source: Contact, target: Contact, actor: str) -> list[ConsentEvent]:
        """Fold ``source``'s consent into ``target`` (called by ``contacts.services.merge_contacts``
        in its transaction, after ``source.merged_into`` is set). The rules are in
        ``consent.merge.carry_consent``; returns the ledger entries written."""
        from storeloop.consent.merge import carry_consent

        return carry_consent(source=source, target=target, actor=actor)
