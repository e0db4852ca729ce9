from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from storeloop.crm.models import CrmConnection, CrmSyncAttempt, CrmSyncRecord
from storeloop.crm.services import resync


@admin.register(CrmConnection)
class CrmConnectionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "store", "provider", "status", "broken_reason", "updated_at")
    list_filter = ("provider", "status")
    # Credentials and tokens are never shown: connect with `storeloop crm connect`.
    fields = ("store", "provider", "status", "broken_reason", "base_url", "accounts_url", "data_center", "pipeline",
              "zoho_module", "stage_mapping", "field_mapping")  # fmt: skip
    readonly_fields = ("store", "provider", "status", "broken_reason")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class AttemptInline(admin.TabularInline):  # type: ignore[type-arg]
    model = CrmSyncAttempt
    extra = 0
    can_delete = False
    readonly_fields = ("at", "outcome", "error", "duration_ms")


@admin.register(CrmSyncRecord)
class CrmSyncRecordAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "order", "connection", "state", "attempts", "remote_deal_id", "synced_at", "next_attempt_at")
    list_filter = ("state", "connection__provider", "connection__store")
    search_fields = ("=order__external_id", "=remote_deal_id")
    readonly_fields = [f.name for f in CrmSyncRecord._meta.fields]
    inlines = [AttemptInline]
    actions = ["resync_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Sync selected orders again")
    def resync_selected(self, request: HttpRequest, queryset: QuerySet[CrmSyncRecord]) -> None:
        total = 0
        for store_id in set(queryset.values_list("order__store_id", flat=True)):
            ids = list(queryset.filter(order__store_id=store_id).values_list("order_id", flat=True))
            total += resync(store_id=store_id, order_ids=ids)
        messages.success(request, f"{total} record(s) queued for sync")
