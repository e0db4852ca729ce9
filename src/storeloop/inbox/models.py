"""Every inbound webhook delivery, stored raw before anything is done with it."""

from __future__ import annotations

from django.db import models

from storeloop.stores.models import Store


class InboxDelivery(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received"
        PROCESSED = "processed"
        IGNORED = "ignored"
        FAILED = "failed"

    source = models.CharField(max_length=30)
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="deliveries")
    topic = models.CharField(max_length=100)
    delivery_id = models.CharField(max_length=128)
    webhook_id = models.CharField(max_length=64, blank=True, default="")
    body = models.BinaryField()
    body_hash = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RECEIVED)
    outcome = models.CharField(max_length=200, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "inbox deliveries"
        constraints = [
            # A redelivery of the same delivery is a no-op: the insert conflicts and is dropped.
            # The body hash is part of the key because WooCommerce derives the delivery id from
            # (webhook id, unix second): two different orders changed in the same second share it.
            models.UniqueConstraint(fields=["source", "store", "delivery_id", "body_hash"], name="delivery_once"),
        ]
        indexes = [models.Index(fields=["store", "status", "received_at"])]

    def __str__(self) -> str:
        return f"{self.source} {self.topic} {self.delivery_id}"
