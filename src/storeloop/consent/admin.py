"""Admin for the consent ledger, current states, suppressions and preferences.

The ledger and the states are evidence and are changed only through ``MessagingConsentManager``
(API, unsubscribe links, keywords), so here they are read-only; bulk delete is off too, since a
queryset delete would bypass the ledger's refusal. Suppressions may be added (normalised like
every other entry) and removed.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from storeloop.consent.models import Channel, ConsentEvent, ConsentState, Preference, Suppression
from storeloop.contacts.normalize import normalize_email, normalize_phone


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "store", "contact_id", "channel", "purpose", "action", "lawful_basis", "source",
                    "occurred_at", "recorded_at")  # fmt: skip
    list_filter = ("action", "channel", "purpose", "lawful_basis", "source", "store")
    search_fields = ("=contact__id",)
    list_select_related = ("store",)
    readonly_fields = [f.name for f in ConsentEvent._meta.fields]
    date_hierarchy = "occurred_at"


@admin.register(ConsentState)
class ConsentStateAdmin(ReadOnlyAdmin):
    list_display = ("id", "store", "contact_id", "channel", "purpose", "status", "lawful_basis", "updated_at")
    list_filter = ("status", "channel", "purpose", "lawful_basis", "store")
    search_fields = ("=contact__id",)
    list_select_related = ("store",)
    readonly_fields = [f.name for f in ConsentState._meta.fields]


class SuppressionForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Suppression
        fields = ("store", "channel", "address", "reason", "detail")

    def clean(self) -> dict[str, Any]:
        data: dict[str, Any] = super().clean() or {}
        channel, address = data.get("channel"), data.get("address")
        if channel and address:
            normalized = normalize_email(address) if channel == Channel.EMAIL else normalize_phone(address)
            if not normalized:
                hint = "an e-mail address" if channel == Channel.EMAIL else "a phone number in E.164 (+4930…)"
                self.add_error("address", f"not a valid {channel} address: give {hint}")
            elif Suppression.objects.filter(store=data.get("store"), channel=channel, address=normalized).exists():
                self.add_error("address", "this address is already suppressed on this channel")
            else:
                data["address"] = normalized
                self.instance.address = normalized
        return data


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = SuppressionForm
    list_display = ("id", "store", "channel", "address", "reason", "detail", "created_at")
    list_filter = ("channel", "reason", "store")
    search_fields = ("address",)
    list_select_related = ("store",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # an entry is added or removed, not edited into another address


@admin.register(Preference)
class PreferenceAdmin(ReadOnlyAdmin):
    list_display = ("id", "contact_id", "frequency", "paused_until", "updated_at")
    list_filter = ("frequency",)
    search_fields = ("=contact__id",)
    readonly_fields = [f.name for f in Preference._meta.fields]
