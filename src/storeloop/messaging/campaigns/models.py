"""A campaign: one template sent to an audience, materialised into ``Message`` rows.

The campaign row is the plan and the progress (state, schedule, materialisation cursor, how many
contacts the audience held and how many consent kept out); everything after that — queued, sent,
delivered, failed — lives on the ``Message`` rows (``campaign_id``) and is counted live.
"""

from __future__ import annotations

from django.db import models

from storeloop.consent.models import Channel, Purpose
from storeloop.core.models import TimeStampedModel
from storeloop.messaging.models import TemplateVersion
from storeloop.stores.models import Store


class Campaign(TimeStampedModel):
    class State(models.TextChoices):
        DRAFT = "draft"
        SCHEDULED = "scheduled"
        RUNNING = "running"  # started: materialising and/or sending
        PAUSED = "paused"  # its queued messages are held
        CANCELLED = "cancelled"
        COMPLETED = "completed"  # materialised and nothing left to send

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    template_key = models.SlugField(max_length=100)
    channel = models.CharField(max_length=20, choices=Channel.choices)
    locale = models.CharField(max_length=10, default="en")
    # The published version is pinned when the campaign starts: a resumed or restarted campaign
    # keeps sending what its first recipients got.
    template = models.ForeignKey(TemplateVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    purpose = models.CharField(max_length=20, choices=Purpose.choices, default=Purpose.MARKETING)
    audience = models.JSONField(default=dict, help_text="Condition in the audience language (docs/campaigns.md)")
    custom = models.JSONField(default=dict, blank=True, help_text="Values templates see as {{ custom.* }}")
    state = models.CharField(max_length=20, choices=State.choices, default=State.DRAFT)
    scheduled_at = models.DateTimeField(
        null=True, blank=True, help_text="When to send; with local_time, this wall-clock time in each recipient's zone"
    )
    local_time = models.BooleanField(default=False)
    starts_at = models.DateTimeField(null=True, blank=True, help_text="When materialisation begins")
    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    materialised_at = models.DateTimeField(null=True, blank=True, help_text="Every recipient has a message row")
    finished_at = models.DateTimeField(null=True, blank=True)
    # Materialisation progress, written in the same transaction as each batch of messages.
    cursor = models.BigIntegerField(default=0, help_text="Last contact id materialised")
    targeted = models.IntegerField(default=0, help_text="Contacts in the audience")
    excluded = models.IntegerField(default=0, help_text="Audience contacts consent kept out when materialised")
    progress_at = models.DateTimeField(null=True, blank=True, help_text="Last materialisation batch")
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["state", "starts_at"], name="campaign_due_idx")]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk}, {self.state})"
