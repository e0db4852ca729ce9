"""Admin for templates, messages and messaging connections.

Templates are saved and published through ``TemplateRepository`` (API or ``storeloop template``),
which validates them; here they are read, not edited. Messages are the dispatcher's records and
read-only. Connection secrets are never shown: connect with ``storeloop messaging connect``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from storeloop.messaging.channels.connections import MAX_CAP_HOURS, MAX_RATE
from storeloop.messaging.models import Message, MessageTemplate, MessagingConnection, TemplateVersion


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A record to look at: no add, change or delete (the change page shows it read-only)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TemplateVersionInline(admin.TabularInline):  # type: ignore[type-arg]
    model = TemplateVersion
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("number", "subject", "variables", "created_at", "created_by")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "store", "key", "channel", "locale", "published_number", "updated_at")
    list_filter = ("channel", "locale", "store")
    search_fields = ("key", "description")
    list_select_related = ("store", "published")
    fields = ("store", "key", "channel", "locale", "description", "published", "created_at", "updated_at")
    # Only the description is editable: content changes are new versions, validated on save.
    readonly_fields = ("store", "key", "channel", "locale", "published", "created_at", "updated_at")
    inlines = [TemplateVersionInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a template starts with a validated version: use the API or `storeloop template save`

    @admin.display(description="published version")
    def published_number(self, obj: MessageTemplate) -> str:
        return f"v{obj.published.number}" if obj.published else "—"


@admin.register(TemplateVersion)
class TemplateVersionAdmin(ReadOnlyAdmin):
    list_display = ("id", "template", "number", "subject", "created_at", "created_by")
    list_filter = ("template__channel", "template__store")
    search_fields = ("template__key",)
    list_select_related = ("template",)
    readonly_fields = [f.name for f in TemplateVersion._meta.fields]


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "store", "contact_id", "channel", "purpose", "status", "reason", "attempts", "campaign_id",
                    "created_at", "sent_at")  # fmt: skip
    list_filter = ("status", "channel", "purpose", "store")
    search_fields = ("=id", "=contact__id", "=campaign_id", "=provider_message_id", "=dedupe_key")
    list_select_related = ("store",)
    readonly_fields = [f.name for f in Message._meta.fields]
    date_hierarchy = "created_at"
    show_full_result_count = False  # a COUNT(*) of a large message table on every page is not worth it


class ConnectionForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = MessagingConnection
        fields = ("messages_per_second", "marketing_cap_hours", "quiet_hours_start", "quiet_hours_end", "active")

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        if (data.get("quiet_hours_start") is None) != (data.get("quiet_hours_end") is None):
            raise forms.ValidationError("Quiet hours need both a start and an end (or neither, for the default).")
        cap = data.get("marketing_cap_hours")
        if cap is not None and not 0 <= cap <= MAX_CAP_HOURS:
            self.add_error("marketing_cap_hours", f"must be between 0 and {MAX_CAP_HOURS}")
        return data

    def clean_messages_per_second(self) -> float:
        rate = float(self.cleaned_data["messages_per_second"])
        if not 0 < rate <= MAX_RATE:
            raise forms.ValidationError(f"must be above 0 and at most {MAX_RATE:g}")
        return rate


@admin.register(MessagingConnection)
class MessagingConnectionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = ConnectionForm
    list_display = ("id", "store", "channel", "provider", "messages_per_second", "active", "updated_at")
    list_filter = ("channel", "provider", "active")
    list_select_related = ("store",)
    # ``credentials`` is never listed: secrets stay encrypted and out of pages. Settings are not
    # editable here because they are validated when connecting (`storeloop messaging connect`).
    fields = ("store", "channel", "provider", "settings", "messages_per_second", "marketing_cap_hours",
              "quiet_hours_start", "quiet_hours_end", "active", "created_at", "updated_at")  # fmt: skip
    readonly_fields = ("store", "channel", "provider", "settings", "created_at", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
