"""CRM connections of a store and the per-order sync record."""

from __future__ import annotations

from django.db import models

from storeloop.core.crypto import EncryptedTextField
from storeloop.core.models import TimeStampedModel
from storeloop.orders.models import Order
from storeloop.stores.models import Store


class CrmConnection(TimeStampedModel):
    class Provider(models.TextChoices):
        HUBSPOT = "hubspot", "HubSpot"
        ZOHO = "zoho", "Zoho CRM"

    class Status(models.TextChoices):
        ACTIVE = "active"
        BROKEN = "broken"  # credentials revoked or rejected: the operator must reconnect

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="crm_connections")
    provider = models.CharField(max_length=20, choices=Provider.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    broken_reason = models.TextField(blank=True, default="")
    # JSON of the provider's credentials (token, or client id/secret/refresh token), encrypted.
    credentials = EncryptedTextField()
    # Zoho's short-lived access token, shared by every worker so refreshes stay rare; encrypted.
    cached_token = EncryptedTextField(blank=True, default="")
    base_url = models.URLField(blank=True, default="", help_text="HubSpot API base, or Zoho API domain")
    accounts_url = models.URLField(blank=True, default="", help_text="Zoho accounts server")
    data_center = models.CharField(max_length=10, blank=True, default="")
    # Whose rate budget this connection spends (HubSpot: per account, shared across stores).
    budget_key = models.CharField(max_length=200)
    stage_mapping = models.JSONField(default=dict, blank=True, help_text="WooCommerce status → CRM stage")
    field_mapping = models.JSONField(default=dict, blank=True, help_text="Extra CRM property → order field")
    pipeline = models.CharField(max_length=100, blank=True, default="")
    zoho_module = models.CharField(max_length=20, blank=True, default="Deals", help_text="Deals or Sales_Orders")
    # Set while a drain task is queued, so order events enqueue at most one drain at a time.
    drain_scheduled = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "provider"], name="one_connection_per_provider")]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} for store #{self.store_id}"


class CrmSyncRecord(TimeStampedModel):
    class State(models.TextChoices):
        PENDING = "pending"
        SYNCED = "synced"
        FAILED = "failed"  # will be retried at next_attempt_at
        DEAD = "dead"  # gave up (terminal error or attempts exhausted); resync to try again

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="crm_syncs")
    connection = models.ForeignKey(CrmConnection, on_delete=models.CASCADE, related_name="records")
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    remote_contact_id = models.CharField(max_length=64, blank=True, default="")
    remote_deal_id = models.CharField(max_length=64, blank=True, default="")
    remote_line_ids = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    payload_hash = models.CharField(max_length=64, blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    # A drain claims a batch of records until this time, so two workers never push the same record.
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["order", "connection"], name="one_sync_record_per_order")]
        indexes = [models.Index(fields=["connection", "state", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"sync of order #{self.order_id} to {self.connection_id}: {self.state}"


class CrmSyncAttempt(models.Model):
    """History of every attempt of a record: when, what happened, how long it took."""

    record = models.ForeignKey(CrmSyncRecord, on_delete=models.CASCADE, related_name="history")
    at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=20)  # synced | unchanged | failed | dead
    error = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.outcome} at {self.at}"
