"""The metrics API: /api/v1/metrics/… and GET /api/v1/contacts/{id}/metrics. Every read is scoped
to the API key's store; money is per currency, as decimal strings."""

from __future__ import annotations

import datetime as dt

from django.http import HttpRequest
from django.utils import timezone
from ninja import P, QueryEx, Router

from storeloop.config.auth import request_store
from storeloop.core.pagination import paginate
from storeloop.metrics.schemas import (
    ContactMetricsOut,
    DailyOut,
    DailyPage,
    ProductMetricsOut,
    ProductPage,
    RfmCurrencyOut,
    RfmOut,
)
from storeloop.metrics.selectors import (
    contact_figures,
    daily_metrics,
    product_metrics_list,
    product_names,
    rfm_segment_counts,
)

router = Router(tags=["metrics"])
contact_metrics_router = Router(tags=["metrics"])


@contact_metrics_router.get(
    "/{contact_id}/metrics",
    response=ContactMetricsOut,
    summary="A contact's order figures, CLV and RFM, per currency",
)
def get_contact_metrics(request: HttpRequest, contact_id: int, as_of: dt.datetime | None = None) -> ContactMetricsOut:
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=dt.UTC)  # every time in the API is UTC
    figures = contact_figures(store=request_store(request), contact_id=contact_id, as_of=as_of or timezone.now())
    return ContactMetricsOut.of(figures)


@router.get("/rfm", response=RfmOut, summary="Contacts per RFM segment, per currency")
def get_rfm(request: HttpRequest, currency: str | None = None) -> RfmOut:
    counts = rfm_segment_counts(store=request_store(request), currency=currency)
    return RfmOut(currencies=[RfmCurrencyOut.of(c) for c in counts])


@router.get("/products", response=ProductPage, summary="Sales per product and currency")
def list_products(
    request: HttpRequest,
    currency: str | None = None,
    order_by: str = "revenue",
    limit: int = 50,
    offset: int = 0,
) -> ProductPage:
    store = request_store(request)
    qs = product_metrics_list(store=store, currency=currency, order_by=order_by)
    items, count, next_offset = paginate(qs, limit=limit, offset=offset)
    names = product_names(store=store, external_ids=[p.product_external_id for p in items])
    return ProductPage(
        count=count,
        next_offset=next_offset,
        items=[ProductMetricsOut.of(p, names.get(p.product_external_id)) for p in items],
    )


@router.get(
    "/daily",
    response=DailyPage,
    by_alias=True,
    summary="Orders, revenue and new/returning customers per UTC day and currency",
)
def get_daily(
    request: HttpRequest,
    from_: QueryEx[dt.date, P(alias="from")],
    to: dt.date,
    currency: str | None = None,
) -> DailyPage:
    rows = daily_metrics(store=request_store(request), start=from_, end=to, currency=currency)
    return DailyPage.model_validate({"from": from_, "to": to, "items": [DailyOut.of(r) for r in rows]})
