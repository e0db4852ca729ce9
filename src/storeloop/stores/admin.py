from __future__ import annotations

from django.contrib import admin

from storeloop.stores.models import ApiKey, Store, StoreWebhook


class StoreWebhookInline(admin.TabularInline):  # type: ignore[type-arg]
    model = StoreWebhook
    extra = 0
    can_delete = False
    readonly_fields = (
        "topic",
        "external_id",
        "state",
        "last_checked_at",
        "last_problem",
        "last_problem_at",
        "reenabled_count",
    )


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "name", "url", "is_demo", "last_reconciled_at", "reconciled_until")
    # Secrets are never shown or edited here: use `storeloop store add` / `keys rotate`.
    fields = (
        "name",
        "url",
        "auth_mode",
        "is_demo",
        "manage_webhooks",
        "reconciled_until",
        "last_reconciled_at",
        "last_reconcile_error",
    )
    readonly_fields = ("last_reconciled_at", "last_reconcile_error")
    inlines = [StoreWebhookInline]

    def has_add_permission(self, request: object) -> bool:
        return False  # adding needs a credentials check against the shop: use the CLI


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("prefix", "name", "store", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "key_hash", "store", "last_used_at")

    def has_add_permission(self, request: object) -> bool:
        return False  # keys are shown once at creation: `storeloop apikey create`
