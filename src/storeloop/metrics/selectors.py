"""Reads of the metric tables, always scoped to one store, with the figures derived on read."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from django.db.models import Count, QuerySet

from storeloop.contacts.models import Contact
from storeloop.contacts.selectors import contact_get_for_store
from storeloop.core.errors import ValidationError
from storeloop.metrics.clv.service import Prediction, predict
from storeloop.metrics.definitions import SEGMENTS
from storeloop.metrics.models import MONEY_SCALE, ClvModel, ContactMetrics, DailyMetrics, ProductMetrics, RfmThresholds
from storeloop.orders.models import Product
from storeloop.stores.models import Store

MAX_DAILY_RANGE_DAYS = 366
_FOUR_PLACES = Decimal("0.0001")


def amount(e4: int) -> Decimal:
    """A stored _e4 amount as a Decimal in currency units."""
    return Decimal(e4).scaleb(-4)


def average(total_e4: int, count: int) -> Decimal | None:
    if count <= 0:
        return None
    return (Decimal(total_e4) / count / MONEY_SCALE).quantize(_FOUR_PLACES, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class CurrencyFigures:
    metrics: ContactMetrics
    prediction: Prediction

    @property
    def mean_days_between_orders(self) -> float | None:
        m = self.metrics
        if m.order_count < 2:
            return None
        return round((m.last_order_at - m.first_order_at).total_seconds() / 86400 / (m.order_count - 1), 2)


@dataclass(frozen=True)
class ContactFigures:
    contact: Contact
    as_of: dt.datetime
    currencies: list[CurrencyFigures]


def contact_figures(*, store: Store, contact_id: int, as_of: dt.datetime) -> ContactFigures:
    """A contact's figures per currency, with the 12-month prediction as of ``as_of``."""
    contact = contact_get_for_store(store=store, contact_id=contact_id)
    rows = list(ContactMetrics.objects.filter(store=store, contact=contact).order_by("currency"))
    models = {m.currency: m for m in ClvModel.objects.filter(store=store, currency__in=[r.currency for r in rows])}
    return ContactFigures(
        contact,
        as_of,
        [CurrencyFigures(row, predict(row, models.get(row.currency), as_of)) for row in rows],
    )


@dataclass(frozen=True)
class SegmentCounts:
    currency: str
    thresholds_as_of: dt.datetime | None
    contacts: int
    unscored: int
    segments: dict[str, int]


def rfm_segment_counts(*, store: Store, currency: str | None = None) -> list[SegmentCounts]:
    qs = ContactMetrics.objects.filter(store=store)
    if currency:
        qs = qs.filter(currency=currency.upper())
    counts: dict[str, dict[str, int]] = {}
    for row in qs.values("currency", "segment").annotate(n=Count("id")).order_by("currency", "segment"):
        counts.setdefault(row["currency"], {})[row["segment"]] = row["n"]
    thresholds = dict(RfmThresholds.objects.filter(store=store).values_list("currency", "as_of"))
    return [
        SegmentCounts(
            currency=cur,
            thresholds_as_of=thresholds.get(cur),
            contacts=sum(by_segment.values()),
            unscored=by_segment.get("", 0),
            segments={name: by_segment.get(name, 0) for name in SEGMENTS},
        )
        for cur, by_segment in sorted(counts.items())
    ]


PRODUCT_ORDERINGS = {
    "revenue": ("-revenue_e4", "product_external_id", "currency"),
    "units": ("-units", "product_external_id", "currency"),
    "orders": ("-orders", "product_external_id", "currency"),
}


def product_metrics_list(
    *, store: Store, currency: str | None = None, order_by: str = "revenue"
) -> QuerySet[ProductMetrics]:
    if order_by not in PRODUCT_ORDERINGS:
        raise ValidationError(
            f"order_by must be one of {', '.join(PRODUCT_ORDERINGS)}",
            code="invalid_order_by",
            details=[{"field": "order_by", "error": f"one of {', '.join(PRODUCT_ORDERINGS)}"}],
        )
    qs = ProductMetrics.objects.filter(store=store)
    if currency:
        qs = qs.filter(currency=currency.upper())
    return qs.order_by(*PRODUCT_ORDERINGS[order_by])


def product_names(*, store: Store, external_ids: list[int]) -> dict[int, tuple[int, str]]:
    """The mirrored product (our id, name) behind each shop product id, where we know it."""
    return {
        ext: (pk, name)
        for pk, ext, name in Product.objects.filter(store=store, external_id__in=external_ids).values_list(
            "pk", "external_id", "name"
        )
    }


def daily_metrics(*, store: Store, start: dt.date, end: dt.date, currency: str | None = None) -> list[DailyMetrics]:
    """Days from ``start`` to ``end`` inclusive that have counted orders."""
    if end < start:
        raise ValidationError(
            "'to' must not be before 'from'",
            code="invalid_date_range",
            details=[{"field": "to", "error": "must be on or after 'from'"}],
        )
    if (end - start).days + 1 > MAX_DAILY_RANGE_DAYS:
        raise ValidationError(
            f"at most {MAX_DAILY_RANGE_DAYS} days per request",
            code="date_range_too_long",
            details=[{"field": "to", "error": f"at most {MAX_DAILY_RANGE_DAYS} days after 'from'"}],
        )
    qs = DailyMetrics.objects.filter(store=store, day__gte=start, day__lte=end)
    if currency:
        qs = qs.filter(currency=currency.upper())
    return list(qs.order_by("day", "currency"))
