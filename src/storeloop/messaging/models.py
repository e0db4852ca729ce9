"""Message templates with immutable versions (more messaging models join as the dispatcher lands)."""

from __future__ import annotations

from typing import Any

from django.db import models

from storeloop.consent.models import Channel
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
