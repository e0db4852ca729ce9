from __future__ import annotations

from django.contrib import admin

from storeloop.orders.models import Order, OrderLine, OrderRefund, Product


class OrderLineInline(admin.TabularInline):  # type: ignore[type-arg]
    model = OrderLine
    extra = 0
    readonly_fields = ("external_id", "product_external_id", "name", "sku", "quantity", "subtotal", "total")
    exclude = ("product", "variation_external_id", "total_tax")
    can_delete = False


class OrderRefundInline(admin.TabularInline):  # type: ignore[type-arg]
    model = OrderRefund
    extra = 0
    readonly_fields = ("external_id", "reason", "amount")
    can_delete = False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "external_id",
        "store",
        "status",
        "total",
        "currency",
        "payment_method",
        "is_cod",
        "date_created",
        "date_modified",
    )
    list_filter = ("store", "status", "is_cod", "currency")
    search_fields = ("=external_id", "number")
    date_hierarchy = "date_created"
    list_select_related = ("store",)
    inlines = [OrderLineInline, OrderRefundInline]
    readonly_fields = ("store", "external_id", "contact", "payload_hash", "date_modified", "deleted_at")

    def has_add_permission(self, request: object) -> bool:
        return False  # the shop is the source of truth


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("external_id", "store", "name", "sku", "price", "status")
    list_filter = ("store", "status")
    search_fields = ("name", "sku")
