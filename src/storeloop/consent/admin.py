"""Admin for the consent ledger, current states, suppressions and preferences.

The ledger and the states are evidence and are changed only through ``MessagingConsentManager``
(API, unsubscribe links, keywords), so here they are read-only; bulk delete is off too, since a
queryset delete would bypass the ledger's refusal. Suppressions may be added (normalised like
every other entry) and removed; a removal (one or a bulk action) goes through
``MessagingConsentManager.unsuppress``, which records it as a ``SuppressionRemoval``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from storeloop.consent.models import Channel, ConsentEvent, ConsentState, Preference, Suppression, SuppressionRemoval
from storeloop.consent.services import MessagingConsentManager
from storeloop.contacts.normalize import normalize_email, normalize_phone
from storeloop.core.errors import NotFound

REMOVED_IN_ADMIN = "removed in the admin"


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

    def delete_model(self, request: HttpRequest, obj: Suppression) -> None:
        _unsuppress(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Suppression]) -> None:
        for row in queryset:
            _unsuppress(request, row)


def _unsuppress(request: HttpRequest, row: Suppression) -> None:
    # Removed by someone else meanwhile (NotFound): their removal is the one on record.
    with contextlib.suppress(NotFound):
        MessagingConsentManager().unsuppress(row.store_id, row.channel, row.address, REMOVED_IN_ADMIN,
                                             f"admin:{request.user.get_username()}")  # fmt: skip


@admin.register(SuppressionRemoval)
class SuppressionRemovalAdmin(ReadOnlyAdmin):
    list_display = ("id", "store", "channel", "suppression_id", "reason", "suppressed_at", "actor", "note",
                    "removed_at")  # fmt: skip
    list_filter = ("channel", "reason", "store")
    search_fields = ("=address_sha256", "actor")
    list_select_related = ("store",)
    readonly_fields = [f.name for f in SuppressionRemoval._meta.fields]
    date_hierarchy = "removed_at"


@admin.register(Preference)
class PreferenceAdmin(ReadOnlyAdmin):
    list_display = ("id", "contact_id", "frequency", "paused_until", "updated_at")
    list_filter = ("frequency",)
    search_fields = ("=contact__id",)
    readonly_fields = [f.name for f in Preference._meta.fields]
