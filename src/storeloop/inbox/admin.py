from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from storeloop.inbox.models import InboxDelivery
from storeloop.inbox.services import replay_delivery


@admin.register(InboxDelivery)
class InboxDeliveryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "store", "source", "topic", "status", "outcome", "attempts", "received_at")
    list_filter = ("status", "source", "topic", "store")
    search_fields = ("=delivery_id",)
    exclude = ("body",)
    readonly_fields = (
        "source",
        "store",
        "topic",
        "delivery_id",
        "webhook_id",
        "body_hash",
        "received_at",
        "status",
        "outcome",
        "attempts",
        "last_error",
        "processed_at",
    )
    actions = ["replay"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Replay selected deliveries")
    def replay(self, request: HttpRequest, queryset: QuerySet[InboxDelivery]) -> None:
        for row in queryset:
            replay_delivery(store=None, delivery_pk=row.pk)
        messages.success(request, f"{queryset.count()} deliveries queued for processing again")
