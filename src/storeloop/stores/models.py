"""A connected WooCommerce shop: the tenant boundary. Everything else carries a ``store``."""

from __future__ import annotations

from django.db import models

from storeloop.core.crypto import EncryptedTextField
from storeloop.core.models import TimeStampedModel


class Store(TimeStampedModel):
    class AuthMode(models.TextChoices):
        BASIC = "basic", "HTTP Basic (HTTPS)"
        QUERY = "query", "Query string"

    name = models.CharField(max_length=200)
    url = models.URLField(max_length=500, help_text="The shop's home URL, e.g. https://shop.example")
    consumer_key = EncryptedTextField()
    consumer_secret = EncryptedTextField()
    webhook_secret = EncryptedTextField()
    auth_mode = models.CharField(max_length=10, choices=AuthMode.choices, default=AuthMode.BASIC)
    is_demo = models.BooleanField(default=False)
    manage_webhooks = models.BooleanField(
        default=True, help_text="Register our webhooks on the shop and re-enable them when disabled"
    )
    # Reconciliation watermark: the newest date_modified_gmt seen through a full REST sweep.
    reconciled_until = models.DateTimeField(null=True, blank=True)
    last_reconciled_at = models.DateTimeField(null=True, blank=True)
    last_reconcile_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    @property
    def api_url(self) -> str:
        return self.url.rstrip("/") + "/wp-json/wc/v3"


class StoreWebhook(TimeStampedModel):
    """A webhook we registered on the shop, and what we last saw of its state there."""

    class State(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        DISABLED = "disabled"
        MISSING = "missing"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="webhooks")
    topic = models.CharField(max_length=100)
    external_id = models.BigIntegerField()
    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVE)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    reenabled_count = models.PositiveIntegerField(default=0)
    # What was wrong the last time we found it wrong ("disabled", "paused", "missing") and when.
    last_problem = models.CharField(max_length=20, blank=True, default="")
    last_problem_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "topic"], name="store_webhook_topic_once"),
        ]

    def __str__(self) -> str:
        return f"{self.topic} on store #{self.store_id}: {self.state}"


class ApiKey(TimeStampedModel):
    """An API key scoped to one store. Only a SHA-256 of the secret part is stored.

    ``operator`` keys also reach what spans every store of the installation (the task queue's
    dead letters); store keys never do.
    """

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, default="default")
    operator = models.BooleanField(default=False, help_text="May manage installation-wide tasks")
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) for store #{self.store_id}"
