"""Mirror of the shop's orders and products.

Money is Decimal with its currency; times are UTC. ``date_modified`` (the shop's
``date_modified_gmt``) is the version: an older snapshot never overwrites a newer one.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from storeloop.contacts.models import Contact
from storeloop.core.models import TimeStampedModel
from storeloop.stores.models import Store


def money_field(**kwargs: Any) -> models.DecimalField[Any, Any]:
    """Money column: 4 decimals hold every currency's minor unit (KWD has 3) without rounding."""
    return models.DecimalField(max_digits=18, decimal_places=4, **kwargs)


class Product(TimeStampedModel):
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="products")
    external_id = models.BigIntegerField()
    name = models.CharField(max_length=500)
    sku = models.CharField(max_length=200, blank=True, default="")
    product_type = models.CharField(max_length=40, blank=True, default="")
    status = models.CharField(max_length=40, blank=True, default="")
    price = money_field(null=True, blank=True)
    date_modified = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "external_id"], name="product_once_per_store"),
        ]

    def __str__(self) -> str:
        return self.name


class Order(TimeStampedModel):
    # No single-column indexes where a composite one starts with the column: each index costs every
    # insert (the backfill writes a million rows), and the composites serve the same lookups.
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="orders", db_index=False)
    external_id = models.BigIntegerField()
    number = models.CharField(max_length=64, blank=True, default="")
    contact = models.ForeignKey(Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="orders")
    woo_customer_id = models.BigIntegerField(default=0)
    status = models.CharField(max_length=40)  # indexed with the store: every query is per store
    currency = models.CharField(max_length=3)
    total = money_field()
    total_tax = money_field(default=0)
    shipping_total = money_field(default=0)
    discount_total = money_field(default=0)
    refunded_total = money_field(default=0)
    payment_method = models.CharField(max_length=100, blank=True, default="")
    payment_method_title = models.CharField(max_length=200, blank=True, default="")
    is_cod = models.BooleanField(default=False)
    date_created = models.DateTimeField()
    date_modified = models.DateTimeField()
    date_paid = models.DateTimeField(null=True, blank=True)
    date_completed = models.DateTimeField(null=True, blank=True)
    billing = models.JSONField(default=dict)
    shipping = models.JSONField(default=dict)
    meta_data = models.JSONField(default=list)
    customer_note = models.TextField(blank=True, default="")
    payload_hash = models.CharField(max_length=64, blank=True, default="")
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["store", "external_id"], name="order_once_per_store"),
        ]
        indexes = [
            models.Index(fields=["store", "date_modified"]),
            models.Index(fields=["store", "date_created"]),
            models.Index(fields=["store", "status"]),
        ]

    def __str__(self) -> str:
        return f"order {self.external_id} of store #{self.store_id}"


class OrderLine(models.Model):
    # Indexed by the (order, external_id) constraint.
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines", db_index=False)
    external_id = models.BigIntegerField()
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.SET_NULL)
    product_external_id = models.BigIntegerField(default=0)
    variation_external_id = models.BigIntegerField(default=0)
    name = models.CharField(max_length=500)
    sku = models.CharField(max_length=200, blank=True, default="")
    quantity = models.IntegerField()
    subtotal = money_field()
    total = money_field()
    total_tax = money_field(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order", "external_id"], name="order_line_once"),
        ]

    def __str__(self) -> str:
        return self.name


class OrderRefund(models.Model):
    # Indexed by the (order, external_id) constraint.
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="refunds", db_index=False)
    external_id = models.BigIntegerField()
    reason = models.CharField(max_length=500, blank=True, default="")
    amount = money_field(help_text="Positive amount refunded")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order", "external_id"], name="order_refund_once"),
        ]

    def __str__(self) -> str:
        return f"refund {self.external_id}"
