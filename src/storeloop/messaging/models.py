"""Messaging records: templates with immutable versions, messages, provider connections, and the
customer-service windows that inbound WhatsApp messages open."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models

from storeloop.consent.models import Channel
from storeloop.core.crypto import EncryptedTextField
from storeloop.core.models import TimeStampedModel
from storeloop.stores.models import Store


class MessageTemplate(TimeStampedModel):
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="message_templates")
    key = models.SlugField(max_length=100, help_text="e.g. order-confirmation")
    channel = models.CharField(max_length=20, choices=Channel.choices)
    locale = models.CharField(max_length=10, default="en")
    description = models.CharField(max_length=300, blank=True, default="")
    published = models.ForeignKey("TemplateVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "key", "channel", "locale"], name="template_once"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.channel}, {self.locale})"


class TemplateVersion(models.Model):
    """One immutable version. Editing makes a new draft; publishing points the template at it;
    a rollback publishes an older one."""

    template = models.ForeignKey(MessageTemplate, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    variables = models.JSONField(default=list, help_text="Declared roots: contact, order, store, custom")
    subject = models.CharField(max_length=300, blank=True, default="")
    body_text = models.TextField(blank=True, default="")
    body_html = models.TextField(blank=True, default="")
    # WhatsApp outside the 24-hour window: the approved template and its parameter expressions.
    wa_template_name = models.CharField(max_length=200, blank=True, default="")
    wa_language = models.CharField(max_length=20, blank=True, default="")
    wa_parameters = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["template", "number"], name="template_version_once")]
        ordering = ["template", "-number"]

    def __str__(self) -> str:
        return f"{self.template} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("template versions are immutable: save a new version instead")
        super().save(*args, **kwargs)


class Message(models.Model):
    """One message to one contact on one channel: the durable record the dispatcher works from.

    ``dedupe_key`` is unique per store, so queueing the same logical message twice (a campaign
    resumed, an automation retried, a double click) yields one row and one send.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"  # the attempt is on record; the provider call is due or under way
        SENT = "sent"
        DELIVERED = "delivered"
        READ = "read"
        FAILED = "failed"
        SUPPRESSED = "suppressed"  # the consent gate said no at send time
        UNKNOWN = "unknown"  # the worker died mid-call and the provider cannot tell us: never resent
        CANCELLED = "cancelled"
        HELD = "held"  # its campaign is paused: not claimable until resumed (back to queued)

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="messages")
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="messages")
    channel = models.CharField(max_length=20, choices=Channel.choices)
    purpose = models.CharField(max_length=20)
    template = models.ForeignKey(TemplateVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    context = models.JSONField(default=dict, blank=True, help_text="Ids the template is rendered from")
    dedupe_key = models.CharField(max_length=200)
    idempotency_key = models.UUIDField(default=uuid.uuid4, editable=False)
    campaign_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    priority = models.SmallIntegerField(default=0, help_text="Transactional 10, marketing 0")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    not_before = models.DateTimeField(help_text="Due time: schedule, back-off, quiet hours, caps")
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_until = models.DateTimeField(null=True, blank=True)
    provider = models.CharField(max_length=30, blank=True, default="")
    provider_message_id = models.CharField(max_length=200, blank=True, default="", db_index=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    reason = models.CharField(max_length=100, blank=True, default="", help_text="Why suppressed or delayed")
    created_at = models.DateTimeField(auto_now_add=True)
    attempted_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "dedupe_key"], name="message_once")]
        indexes = [
            # The claim's order per channel (transactional first, then oldest due): read in index
            # order, so a claim stops after its batch instead of sorting the whole queue (100 ms at
            # 100,000), and one channel's backlog is never scanned to reach another's.
            models.Index(fields=["status", "channel", "-priority", "not_before", "id"], name="msg_claim_idx"),
            models.Index(fields=["contact", "channel", "purpose", "sent_at"], name="msg_cap_idx"),
            # Status webhooks name a message by our key (Twilio's sl_key, WhatsApp's callback data,
            # the Message-ID of an e-mail) before, or instead of, the provider's id.
            models.Index(fields=["idempotency_key"], name="msg_key_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} message #{self.pk} ({self.status})"


class HandOver(models.Model):
    """A sending thread's journal entry, written before it hands a group of messages to the provider
    (``messaging.handover``): the ids it hands over next and the sends the provider accepted of the
    group before. Kept ten minutes (the reaper deletes older ones); what a dead worker left tells
    the reaper which of its ``sending`` messages were sent, may have been, or never left."""

    created_at = models.DateTimeField(db_index=True)
    handed = models.JSONField(default=list, help_text="Ids of the messages handed over next")
    accepted = models.JSONField(default=dict, help_text="Message id -> provider id of accepted sends")

    def __str__(self) -> str:
        return f"hand-over #{self.pk}"


class MessagingConnection(TimeStampedModel):
    """How one store sends on one channel: the provider, its secrets and its non-secret settings.

    One connection per store and channel (the dispatcher asks for "the email channel of store 7").
    ``credentials`` is JSON encrypted at rest (SMTP username/password and the bounce webhook secret,
    Twilio auth token, WhatsApp access token, app secret and webhook verify token); ``settings``
    holds what may be shown and logged (host, sender, base URL ...). ``messages_per_second`` is the
    store's rate on this channel, shared by every worker process (see ``channels.factory``); the
    marketing cap and quiet hours are the store's rules on this channel (``policies.MarketingPolicy``).
    """

    class Provider(models.TextChoices):
        SMTP = "smtp", "SMTP relay"
        TWILIO = "twilio", "Twilio"
        WHATSAPP_CLOUD = "whatsapp_cloud", "WhatsApp Cloud API"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="messaging_connections")
    channel = models.CharField(max_length=20, choices=Channel.choices)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    credentials = EncryptedTextField()
    settings = models.JSONField(default=dict, blank=True, help_text="Non-secret provider settings")
    messages_per_second = models.FloatField(default=10.0, help_text="Send rate of the store on this channel")
    # Marketing rules of the store on this channel (``policies.MarketingPolicy``); empty: the defaults.
    marketing_cap_hours = models.FloatField(
        null=True, blank=True,
        help_text="Least hours between two marketing messages to one contact (empty: 16 for e-mail, 24 for SMS "
                  "and WhatsApp; 0: no cap)",
    )  # fmt: skip
    quiet_hours_start = models.TimeField(
        null=True, blank=True,
        help_text="Marketing waits from this local time of the recipient (empty: 21:00 for SMS and WhatsApp, none "
                  "for e-mail; the same start and end: no quiet hours)",
    )  # fmt: skip
    quiet_hours_end = models.TimeField(null=True, blank=True, help_text="… until this local time (empty: 08:00)")
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "channel"], name="one_messaging_connection_per_channel"),
            # A provider only ever serves its own channel.
            models.CheckConstraint(
                condition=models.Q(channel="email", provider="smtp")
                | models.Q(channel="sms", provider="twilio")
                | models.Q(channel="whatsapp", provider="whatsapp_cloud"),
                name="messaging_provider_matches_channel",
            ),
            # Quiet hours have a start and an end, or neither; a cap is not negative.
            models.CheckConstraint(
                condition=models.Q(quiet_hours_start__isnull=True, quiet_hours_end__isnull=True)
                | models.Q(quiet_hours_start__isnull=False, quiet_hours_end__isnull=False),
                name="messaging_quiet_hours_complete",
            ),
            models.CheckConstraint(
                condition=models.Q(marketing_cap_hours__isnull=True) | models.Q(marketing_cap_hours__gte=0),
                name="messaging_cap_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} ({self.channel}) for store #{self.store_id}"


class CustomerServiceWindow(models.Model):
    """When a person last wrote to the store on WhatsApp: the start of the 24-hour customer-service
    window, inside which free text may go (outside it, only an approved template).

    Keyed by the E.164 address like the suppression list: an inbound message names a phone number,
    not a contact, and may arrive before any contact has that number. It only moves forward, since
    webhooks arrive out of order (see ``messaging.inbound.window``).
    """

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    address = models.CharField(max_length=20, help_text="E.164 phone number")
    last_inbound_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "address"], name="service_window_once")]

    def __str__(self) -> str:
        return f"WhatsApp window of store #{self.store_id} since {self.last_inbound_at:%Y-%m-%d %H:%M}"
