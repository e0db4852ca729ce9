"""Consent per contact, channel and purpose: an append-only ledger plus the current state.

The ledger is the evidence (who, when, how, what they were shown); the state row is what the send
gate reads. Every change goes through ``consent.services`` so the two never disagree, and ledger
rows refuse to be changed or deleted through the ORM.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from storeloop.contacts.models import Contact
from storeloop.stores.models import Store


class Channel(models.TextChoices):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"


class Purpose(models.TextChoices):
    TRANSACTIONAL = "transactional"  # order confirmations, COD codes: the contract is the basis
    MARKETING = "marketing"  # newsletters, campaigns: needs consent


class LawfulBasis(models.TextChoices):
    CONSENT = "consent"
    CONTRACT = "contract"
    LEGITIMATE_INTEREST = "legitimate_interest"


class ConsentStatus(models.TextChoices):
    GRANTED = "granted"
    PENDING = "pending"  # double opt-in sent, not confirmed yet
    WITHDRAWN = "withdrawn"


class ImmutableError(Exception):
    pass


class AppendOnlyModel(models.Model):
    """Rows that are evidence: written once, never changed or deleted through the ORM."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ImmutableError(f"{type(self).__name__} rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ImmutableError(f"{type(self).__name__} rows are append-only")


class ConsentEvent(AppendOnlyModel):
    class Action(models.TextChoices):
        GRANT = "grant"
        REQUEST = "request"  # double opt-in asked for, awaiting confirmation
        CONFIRM = "confirm"
        WITHDRAW = "withdraw"
        # Another contact was merged into this one: what its consent became (evidence only, the
        # state row points at the event that decided it).
        MERGE = "merge"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consent_events")
    channel = models.CharField(max_length=20, choices=Channel.choices)
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    action = models.CharField(max_length=20, choices=Action.choices)
    lawful_basis = models.CharField(max_length=30, choices=LawfulBasis.choices, default=LawfulBasis.CONSENT)
    source = models.CharField(max_length=50, help_text="checkout, form, double_opt_in, sms_keyword, unsubscribe_link…")
    # Where and how: IP, user agent, page/form and version, hash of the wording shown.
    evidence = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["contact", "channel", "purpose", "occurred_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.channel}/{self.purpose} for contact #{self.contact_id}"


class ConsentState(models.Model):
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consents")
    channel = models.CharField(max_length=20, choices=Channel.choices)
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    status = models.CharField(max_length=20, choices=ConsentStatus.choices)
    lawful_basis = models.CharField(max_length=30, choices=LawfulBasis.choices)
    last_event = models.ForeignKey(ConsentEvent, on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["contact", "channel", "purpose"], name="consent_state_once"),
        ]

    def __str__(self) -> str:
        return f"{self.channel}/{self.purpose}: {self.status}"


class Suppression(models.Model):
    """An address nothing is sent to on a channel, not even transactional mail (hard bounces,
    complaints, provider-level opt-outs, manual blocks)."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce"
        COMPLAINT = "complaint"
        PROVIDER_OPT_OUT = "provider_opt_out"
        MANUAL = "manual"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    channel = models.CharField(max_length=20, choices=Channel.choices)
    address = models.CharField(max_length=320, help_text="Normalised email or E.164 phone")
    reason = models.CharField(max_length=30, choices=Reason.choices)
    detail = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "channel", "address"], name="suppression_once"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} suppression ({self.reason})"


class SuppressionRemoval(AppendOnlyModel):
    """Who took an address off the suppression list, when and why (the list itself keeps only
    what is in force). The address is kept as a SHA-256 of its normalised form: enough to answer
    "was this address ever unsuppressed?", without copying personal data into the audit trail."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    suppression_id = models.BigIntegerField(help_text="id of the removed entry")
    channel = models.CharField(max_length=20, choices=Channel.choices)
    address_sha256 = models.CharField(max_length=64, db_index=True)
    reason = models.CharField(max_length=30, choices=Suppression.Reason.choices, help_text="why it was suppressed")
    suppressed_at = models.DateTimeField()
    note = models.CharField(max_length=500, blank=True, default="", help_text="why it was removed")
    actor = models.CharField(max_length=150, help_text="api-key:<prefix>, cli, admin:<user>…")
    removed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.channel} suppression #{self.suppression_id} removed"


class Preference(models.Model):
    """What a contact chose in the preference center beyond per-purpose consent."""

    class Frequency(models.TextChoices):
        ANY = "any", "As it happens"
        WEEKLY = "weekly", "At most weekly"
        MONTHLY = "monthly", "At most monthly"

    contact = models.OneToOneField(Contact, on_delete=models.CASCADE, related_name="preference")
    frequency = models.CharField(max_length=20, choices=Frequency.choices, default=Frequency.ANY)
    paused_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"preferences of contact #{self.contact_id}"
