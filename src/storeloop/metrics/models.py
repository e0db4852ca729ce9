"""Metric tables: derived from the order mirror, never a source of truth.

Money is kept as whole numbers of 1/10,000 of the currency unit (columns ending in ``_e4``), the
same four decimals as the mirror's Decimal(18, 4): sums and deltas are then exact integer
arithmetic on SQLite too (which would otherwise add decimals as binary floats), so the
incremental path and the full recompute agree to the last digit. Every money figure carries its
currency; no row mixes two.

Two kinds of tables:

* contributions (``OrderContribution``, ``OrderLineContribution``): what each counted order
  last contributed, one row per order and per line. The incremental path diffs an order's new
  contribution against the stored one and applies the difference to the aggregates.
* aggregates (``ContactMetrics``, ``DailyMetrics``, ``ProductMetrics``): always equal to a
  GROUP BY over the contributions, which is exactly what the full recompute runs.

The derived tables use foreign keys without database constraints (and contributions refer to
orders and lines by plain id): every row is rebuilt from the mirror, and a 1,000,000-row rebuild
should not pay a parent lookup per row. Orders are never deleted from the mirror (only marked);
a store's deletion takes its rows with it. A contribution keeps the id of the contact it was
counted for even if that contact is deleted (DO_NOTHING): the aggregates must stay equal to a
GROUP BY over the contributions, and the next update of the order (or a full recompute) moves
it on. Each table has as few indexes as its reads need: every one costs a B-tree insert per row.
"""

from __future__ import annotations

from django.db import models

from storeloop.contacts.models import Contact
from storeloop.stores.models import Store

MONEY_SCALE = 10_000  # the _e4 columns hold amount × MONEY_SCALE


class OrderContribution(models.Model):
    """One counted order's share of the daily and contact figures, as last computed."""

    # The order's id, never generated: BigAutoField only for its column type, which on SQLite
    # makes the key the table's rowid (one B-tree less to write per row than a bigint key).
    order_id = models.BigAutoField(primary_key=True)
    store = models.ForeignKey(Store, on_delete=models.CASCADE, db_constraint=False, db_index=False, related_name="+")
    contact = models.ForeignKey(
        Contact, null=True, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    currency = models.CharField(max_length=3)
    created = models.DateTimeField(help_text="The order's date_created (UTC)")
    day = models.DateField(help_text="UTC day of date_created")
    gross_e4 = models.BigIntegerField()
    refunds_e4 = models.BigIntegerField()

    class Meta:
        indexes = [
            # Covering, in the order the contact figures are aggregated in: the full recompute
            # streams through it without sorting, an update reads a contact's orders from it.
            models.Index(
                fields=["store", "contact", "currency", "day", "created", "gross_e4", "refunds_e4"],
                name="metrics_oc_by_contact",
            )
        ]

    def __str__(self) -> str:
        return f"contribution of order #{self.order_id}"


class OrderLineContribution(models.Model):
    """One line of a counted order: its share of its product's figures, as last computed."""

    line_id = models.BigAutoField(primary_key=True)  # the OrderLine's id, never generated (as above)
    order_id = models.BigIntegerField(db_index=True)  # an update's lookup; a contact's lines via its orders
    store = models.ForeignKey(Store, on_delete=models.CASCADE, db_constraint=False, db_index=False, related_name="+")
    contact = models.ForeignKey(
        Contact, null=True, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    product_external_id = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    units = models.BigIntegerField()
    revenue_e4 = models.BigIntegerField()
    refunds_e4 = models.BigIntegerField()

    def __str__(self) -> str:
        return f"line #{self.line_id} of order #{self.order_id}"


class ContactMetrics(models.Model):
    """A contact's figures in one currency, with its RFM scores against the store's thresholds."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, db_constraint=False, db_index=False, related_name="+")
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, db_constraint=False, db_index=False, related_name="metrics"
    )
    currency = models.CharField(max_length=3)
    order_count = models.IntegerField()
    purchase_days = models.IntegerField(help_text="Distinct UTC days with a counted order")
    gross_e4 = models.BigIntegerField()
    refunds_e4 = models.BigIntegerField()
    net_e4 = models.BigIntegerField()
    first_day_net_e4 = models.BigIntegerField(help_text="Net of the first purchase day (CLV input)")
    first_order_at = models.DateTimeField()
    last_order_at = models.DateTimeField()
    r_score = models.SmallIntegerField(null=True)
    f_score = models.SmallIntegerField(null=True)
    m_score = models.SmallIntegerField(null=True)
    segment = models.CharField(max_length=30, blank=True, default="")

    class Meta:
        verbose_name_plural = "contact metrics"
        constraints = [
            models.UniqueConstraint(fields=["contact", "currency"], name="metrics_contact_once"),
        ]
        indexes = [models.Index(fields=["store", "currency", "segment"], name="metrics_cm_segment")]

    def __str__(self) -> str:
        return f"contact #{self.contact_id} in {self.currency}"


class DailyMetrics(models.Model):
    """One store's counted orders of one UTC day in one currency."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, db_constraint=False, db_index=False, related_name="+")
    day = models.DateField()
    currency = models.CharField(max_length=3)
    orders = models.IntegerField()
    gross_e4 = models.BigIntegerField()
    refunds_e4 = models.BigIntegerField()
    new_customers = models.IntegerField()
    returning_customers = models.IntegerField()

    class Meta:
        verbose_name_plural = "daily metrics"
        constraints = [
            models.UniqueConstraint(fields=["store", "day", "currency"], name="metrics_daily_once"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.currency} of store #{self.store_id}"


class ProductMetrics(models.Model):
    """One product's sales in one currency, keyed by the shop's product id (variations folded in)."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, db_constraint=False, db_index=False, related_name="+")
    product_external_id = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    orders = models.IntegerField()
    units = models.BigIntegerField()
    revenue_e4 = models.BigIntegerField()
    refunds_e4 = models.BigIntegerField()
    buyers = models.IntegerField()
    repeat_buyers = models.IntegerField(help_text="Buyers with two or more orders of this product")

    class Meta:
        verbose_name_plural = "product metrics"
        constraints = [
            models.UniqueConstraint(fields=["store", "product_external_id", "currency"], name="metrics_product_once"),
        ]

    def __str__(self) -> str:
        return f"product {self.product_external_id} {self.currency} of store #{self.store_id}"


class RfmThresholds(models.Model):
    """Quintile cut points of one store and currency, refreshed by the periodic job.

    A value scores 1 + the number of cut points it exceeds (strictly), so equal values always get
    equal scores. Recency cuts are timestamps of the last order: the later, the better.
    """

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    currency = models.CharField(max_length=3)
    as_of = models.DateTimeField(help_text="When the quintiles were taken (recency is measured to it)")
    contacts = models.IntegerField(help_text="Contacts the quintiles were taken over")
    r_cut1 = models.DateTimeField()
    r_cut2 = models.DateTimeField()
    r_cut3 = models.DateTimeField()
    r_cut4 = models.DateTimeField()
    f_cut1 = models.IntegerField()
    f_cut2 = models.IntegerField()
    f_cut3 = models.IntegerField()
    f_cut4 = models.IntegerField()
    m_cut1 = models.BigIntegerField()
    m_cut2 = models.BigIntegerField()
    m_cut3 = models.BigIntegerField()
    m_cut4 = models.BigIntegerField()

    class Meta:
        verbose_name_plural = "RFM thresholds"
        constraints = [
            models.UniqueConstraint(fields=["store", "currency"], name="metrics_rfm_once"),
        ]

    def __str__(self) -> str:
        return f"RFM thresholds {self.currency} of store #{self.store_id}"


class ClvModel(models.Model):
    """The BG/NBD + Gamma-Gamma fit of one store and currency (time unit: weeks)."""

    class Quality(models.TextChoices):
        OK = "ok"
        TOO_THIN = "too_thin"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    currency = models.CharField(max_length=3)
    fitted_at = models.DateTimeField()
    as_of = models.DateTimeField(help_text="End of the observation window the fit used")
    customers = models.IntegerField(help_text="Customers in the fit (a sample past the cap)")
    repeat_customers = models.IntegerField()
    quality = models.CharField(max_length=20, choices=Quality.choices)
    reason = models.CharField(max_length=200, blank=True, default="")
    r = models.FloatField(null=True)
    alpha = models.FloatField(null=True)
    a = models.FloatField(null=True)
    b = models.FloatField(null=True)
    p = models.FloatField(null=True)
    q = models.FloatField(null=True)
    gamma = models.FloatField(null=True)
    bgnbd_log_likelihood = models.FloatField(null=True)
    gamma_gamma_log_likelihood = models.FloatField(null=True)

    class Meta:
        verbose_name = "CLV model"
        constraints = [
            models.UniqueConstraint(fields=["store", "currency"], name="metrics_clv_once"),
        ]

    def __str__(self) -> str:
        return f"CLV model {self.currency} of store #{self.store_id}: {self.quality}"
