"""People of a store and the identities that point at them.

The identity rule, enforced by a unique constraint rather than by code paths: within a store an
(email | phone | WooCommerce customer id) value belongs to exactly one contact. Every path that
creates contacts (webhooks, reconciliation, backfill, imports, forms, leads) resolves through
``contacts.services.resolve_contact``, and a race between two writers ends in IntegrityError and a
re-read, never in a second contact.
"""

from __future__ import annotations

from django.db import models

from storeloop.core.models import TimeStampedModel
from storeloop.stores.models import Store


class Contact(TimeStampedModel):
    # Indexed by (store, email): a second index on the store alone would only slow down inserts.
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="contacts", db_index=False)
    email = models.CharField(max_length=320, blank=True, default="")
    phone = models.CharField(max_length=20, blank=True, default="", help_text="E.164")
    woo_customer_id = models.BigIntegerField(null=True, blank=True)
    first_name = models.CharField(max_length=200, blank=True, default="")
    last_name = models.CharField(max_length=200, blank=True, default="")
    country = models.CharField(max_length=2, blank=True, default="")
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_from"
    )

    class Meta:
        indexes = [models.Index(fields=["store", "email"])]

    def __str__(self) -> str:
        return f"contact #{self.pk}"

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class ContactIdentity(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email"
        PHONE = "phone"
        WOO_CUSTOMER = "woo_customer"

    # Indexed by the (store, kind, value) constraint.
    store = models.ForeignKey(Store, on_delete=models.CASCADE, db_index=False)
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    value = models.CharField(max_length=320)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "kind", "value"], name="identity_once_per_store"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} identity of contact #{self.contact_id}"


class ContactMerge(models.Model):
    """Record of an explicit merge: which contact was folded into which, by whom and why."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE)
    source = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="+")
    target = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=500)
    actor = models.CharField(max_length=150)
    moved_identities = models.PositiveIntegerField(default=0)
    moved_orders = models.PositiveIntegerField(default=0)
    merged_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"merge #{self.source_id} -> #{self.target_id}"
