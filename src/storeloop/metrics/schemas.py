"""Response shapes of the metrics API. Money is a decimal string in the row's currency."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from ninja import Field, Schema

from storeloop.core.money import money_str
from storeloop.metrics.models import DailyMetrics, ProductMetrics
from storeloop.metrics.selectors import ContactFigures, CurrencyFigures, SegmentCounts, amount, average


def _money(e4: int) -> str:
    return money_str(amount(e4))


def _money_or_none(value: Decimal | None) -> str | None:
    return None if value is None else money_str(value)


def _average(total_e4: int, count: int) -> str:
    return money_str(average(total_e4, count) or Decimal(0))


class RfmScoreOut(Schema):
    recency: int
    frequency: int
    monetary: int
    segment: str


class ContactCurrencyOut(Schema):
    currency: str
    order_count: int
    total_spent_gross: str
    total_refunded: str
    total_spent_net: str
    average_order_value: str
    first_order_at: dt.datetime
    last_order_at: dt.datetime
    mean_days_between_orders: float | None
    historical_clv: str
    predicted_clv_12m: str | None
    expected_purchases_12m: float | None
    probability_alive: float | None
    prediction_quality: str
    rfm: RfmScoreOut | None

    @staticmethod
    def of(figures: CurrencyFigures) -> ContactCurrencyOut:
        m, p = figures.metrics, figures.prediction
        rfm = None
        if m.r_score is not None and m.f_score is not None and m.m_score is not None:
            rfm = RfmScoreOut(recency=m.r_score, frequency=m.f_score, monetary=m.m_score, segment=m.segment)
        return ContactCurrencyOut(
            currency=m.currency,
            order_count=m.order_count,
            total_spent_gross=_money(m.gross_e4),
            total_refunded=_money(m.refunds_e4),
            total_spent_net=_money(m.net_e4),
            average_order_value=_average(m.net_e4, m.order_count),
            first_order_at=m.first_order_at,
            last_order_at=m.last_order_at,
            mean_days_between_orders=figures.mean_days_between_orders,
            historical_clv=_money(m.net_e4),
            predicted_clv_12m=_money_or_none(p.clv_12m),
            expected_purchases_12m=p.expected_purchases_12m,
            probability_alive=p.probability_alive,
            prediction_quality=p.quality,
            rfm=rfm,
        )


class ContactMetricsOut(Schema):
    contact_id: int
    merged_into: int | None
    as_of: dt.datetime
    currencies: list[ContactCurrencyOut]

    @staticmethod
    def of(figures: ContactFigures) -> ContactMetricsOut:
        return ContactMetricsOut(
            contact_id=figures.contact.pk,
            merged_into=figures.contact.merged_into_id,
            as_of=figures.as_of,
            currencies=[ContactCurrencyOut.of(c) for c in figures.currencies],
        )


class RfmCurrencyOut(Schema):
    currency: str
    thresholds_as_of: dt.datetime | None
    contacts: int
    unscored: int
    segments: dict[str, int]

    @staticmethod
    def of(counts: SegmentCounts) -> RfmCurrencyOut:
        return RfmCurrencyOut(
            currency=counts.currency,
            thresholds_as_of=counts.thresholds_as_of,
            contacts=counts.contacts,
            unscored=counts.unscored,
            segments=counts.segments,
        )


class RfmOut(Schema):
    currencies: list[RfmCurrencyOut]


class ProductMetricsOut(Schema):
    product_external_id: int
    product_id: int | None
    name: str
    currency: str
    orders: int
    units: int
    revenue: str
    refunds: str
    net_revenue: str
    buyers: int
    repeat_buyers: int
    repeat_purchase_rate: float | None

    @staticmethod
    def of(row: ProductMetrics, product: tuple[int, str] | None) -> ProductMetricsOut:
        return ProductMetricsOut(
            product_external_id=row.product_external_id,
            product_id=product[0] if product else None,
            name=product[1] if product else "",
            currency=row.currency,
            orders=row.orders,
            units=row.units,
            revenue=_money(row.revenue_e4),
            refunds=_money(row.refunds_e4),
            net_revenue=_money(row.revenue_e4 - row.refunds_e4),
            buyers=row.buyers,
            repeat_buyers=row.repeat_buyers,
            repeat_purchase_rate=round(row.repeat_buyers / row.buyers, 4) if row.buyers else None,
        )


class ProductPage(Schema):
    count: int
    next_offset: int | None
    items: list[ProductMetricsOut]


class DailyOut(Schema):
    date: dt.date
    currency: str
    orders: int
    revenue: str
    refunds: str
    net_revenue: str
    average_order_value: str
    new_customers: int
    returning_customers: int

    @staticmethod
    def of(row: DailyMetrics) -> DailyOut:
        net = row.gross_e4 - row.refunds_e4
        return DailyOut(
            date=row.day,
            currency=row.currency,
            orders=row.orders,
            revenue=_money(row.gross_e4),
            refunds=_money(row.refunds_e4),
            net_revenue=_money(net),
            average_order_value=_average(net, row.orders),
            new_customers=row.new_customers,
            returning_customers=row.returning_customers,
        )


class DailyPage(Schema):
    from_: dt.date = Field(alias="from")
    to: dt.date
    items: list[DailyOut]
