"""Read-only admin pages for the metric tables: they are derived, so nothing here is edited."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from storeloop.metrics.models import ClvModel, ContactMetrics, DailyMetrics, ProductMetrics, RfmThresholds


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ContactMetrics)
class ContactMetricsAdmin(ReadOnlyAdmin):
    list_display = ("contact", "store", "currency", "order_count", "net_e4", "last_order_at", "segment")
    list_filter = ("store", "currency", "segment")
    search_fields = ("=contact__id", "contact__email")
    list_select_related = ("contact", "store")
    raw_id_fields = ("contact",)


@admin.register(DailyMetrics)
class DailyMetricsAdmin(ReadOnlyAdmin):
    list_display = ("day", "store", "currency", "orders", "gross_e4", "refunds_e4", "new_customers",
                    "returning_customers")  # fmt: skip
    list_filter = ("store", "currency")
    date_hierarchy = "day"


@admin.register(ProductMetrics)
class ProductMetricsAdmin(ReadOnlyAdmin):
    list_display = ("product_external_id", "store", "currency", "orders", "units", "revenue_e4", "buyers",
                    "repeat_buyers")  # fmt: skip
    list_filter = ("store", "currency")
    search_fields = ("=product_external_id",)


@admin.register(RfmThresholds)
class RfmThresholdsAdmin(ReadOnlyAdmin):
    list_display = ("store", "currency", "as_of", "contacts")


@admin.register(ClvModel)
class ClvModelAdmin(ReadOnlyAdmin):
    list_display = ("store", "currency", "quality", "reason", "customers", "repeat_customers", "fitted_at")
    list_filter = ("quality",)
